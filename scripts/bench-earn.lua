-- wrk script: POST /api/v1/members/{id}/points/earn with a unique idempotency key per
-- request, spread over BENCH_MEMBERS members starting at BENCH_FIRST (1 member = hot row).
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  members = tonumber(os.getenv("BENCH_MEMBERS") or "1000")
  first = tonumber(os.getenv("BENCH_FIRST") or "1")
  key = os.getenv("BENCH_KEY")
  run = os.getenv("BENCH_RUN") or "0"
  -- BENCH_AMOUNT: each earn also carries this order amount (the spend counters' trigger)
  amount = os.getenv("BENCH_AMOUNT")
  n = 0
end

function request()
  n = n + 1
  local user = first + (n % members)
  local extra = ""
  if amount then extra = string.format(',"amount":"%s"', amount) end
  local body = string.format('{"base_points":1,"source_type":"bench","source_id":"%s-%d-%d"%s}', run, tid, n, extra)
  return wrk.format("POST", "/api/v1/members/" .. user .. "/points/earn",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end
