# Sourced by the bench scripts. CPU accounting, in clock ticks: the machine's busy time (/proc/stat) and a process's own
# (user + system). What a run cost = the difference across it; what is neither the server,
# Redis nor the load generator is PostgreSQL (and the little else this machine runs).
TICK=$(getconf CLK_TCK)
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
idle_ticks() { awk '/^cpu / { print $5 + $6; exit }' /proc/stat; }
proc_ticks() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then awk '{ print $14 + $15 }' "/proc/$1/stat"; else echo 0; fi; }
REDIS_PID=$(pgrep -x redis-server | head -1 || true)
# cpu_start; <run, its client under /usr/bin/time -o $CLIENT_TIME>; cpu_report label n server_pid
CLIENT_TIME=$(mktemp)
cpu_start() { C0=$(machine_ticks); I0=$(idle_ticks); R0=$(proc_ticks "$REDIS_PID"); S0=$(proc_ticks "${1:-}"); }
cpu_report() { # label count server_pid
  local c1 i1 r1 s1 client
  c1=$(machine_ticks); i1=$(idle_ticks); r1=$(proc_ticks "$REDIS_PID"); s1=$(proc_ticks "${3:-}")
  client=$(awk -v t="$TICK" '{ printf "%d", ($1 + $2) * t }' "$CLIENT_TIME")
  awk -v l="$1" -v n="$2" -v t="$TICK" -v busy=$((c1 - C0)) -v idle=$((i1 - I0)) \
    -v redis=$((r1 - R0)) -v server=$((s1 - S0)) -v client="$client" 'BEGIN {
      us = 1e6 / t / n; rest = busy - server - redis - client
      printf "  cpu %-28s %7.1f us/req: server %6.1f, PostgreSQL+rest %6.1f, Redis %5.1f, client %5.1f; idle %3.0f%%\n",
        l, busy * us, server * us, rest * us, redis * us, client * us, 100 * idle / (busy + idle) }' >&2
}

