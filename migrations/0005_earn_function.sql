-- An earn in one statement (one round trip, the member's row locked for no longer than the
-- statement). Called outside an explicit transaction, so it commits on its own when it
-- returns 'created' and writes nothing for any other outcome:
--   unauthorized  p_key_hash is given and is no valid API key (checked first: an API
--              earn is authenticated in the same round trip; null for trusted callers)
--   created    the transaction, its batch and the member's totals were written
--   replay     the key is taken: the earlier transaction is returned (the caller compares
--              it with the request: a replay or a conflict)
--   not_found  no such member
--   per_tx     actual points over p_max_per_tx       (actual returned)
--   daily      today's earnings would pass p_daily_limit (actual, earned_today returned)
--   slow       the order amount may move the member up a level: the caller runs the earn
--              in its own transaction with the level rules (rare, so kept out of SQL)
-- Due batches are expired first (as lock_member does), only once the earn will be written.
create function earn_points(
    p_user bigint, p_base bigint, p_amount numeric, p_source_type text, p_source_id text,
    p_now timestamptz, p_tz text, p_expires_at timestamptz,
    p_max_per_tx bigint, p_daily_limit bigint, p_check_upgrade boolean, p_key_hash text
) returns table (
    outcome text, id bigint, user_id bigint, transaction_type text, points_change bigint,
    balance_after bigint, reference_type text, reference_id text, description text,
    status text, unrecovered bigint, created_at timestamptz,
    requested_points bigint, amount numeric, actual bigint, earned_today bigint
)
language plpgsql as $$
#variable_conflict use_column
declare
    today date := (p_now at time zone p_tz)::date;
    m record;
    k record;
    v_actual numeric;
    v_today bigint;
    v_next integer;
    v_balance bigint;
    v_tx bigint;
begin
    if p_key_hash is not null then
        -- as use_api_key: last_used_at refreshed at most once a minute
        update api_keys a set last_used_at = p_now
         where a.key_hash = p_key_hash and a.revoked_at is null
           and (a.last_used_at is null or a.last_used_at < p_now - interval '1 minute');
        if not found and not exists (select 1 from api_keys a
                                      where a.key_hash = p_key_hash and a.revoked_at is null) then
            outcome := 'unauthorized';
            return next;
            return;
        end if;
    end if;

    -- A committed earn with this key is a replay (or a conflict) whoever holds the lock:
    -- looked up before the lock, so the row lock covers only the writes.
    select t.id, t.user_id, t.transaction_type, t.points_change, t.balance_after,
           t.reference_type, t.reference_id, t.description, t.status, t.unrecovered,
           t.created_at, t.requested_points, t.amount
      into k
      from point_transactions t
     where t.transaction_type = 'earn' and t.reference_type = p_source_type
       and t.reference_id = p_source_id and coalesce(t.sub_reference, '') = '';
    if found then
        outcome := 'replay';
        id := k.id; user_id := k.user_id; transaction_type := k.transaction_type;
        points_change := k.points_change; balance_after := k.balance_after;
        reference_type := k.reference_type; reference_id := k.reference_id;
        description := k.description; status := k.status; unrecovered := k.unrecovered;
        created_at := k.created_at; requested_points := k.requested_points; amount := k.amount;
        return next;
        return;
    end if;

    select p.total_spent, p.daily_earned_date, p.daily_earned_points, l.level_order,
           l.point_multiplier
      into m
      from member_profiles p
      join member_levels l on l.id = p.level_id
     where p.user_id = p_user
       for update of p;
    if not found then
        outcome := 'not_found';
        return next;
        return;
    end if;

    v_actual := floor(p_base * m.point_multiplier);
    if v_actual > p_max_per_tx then
        outcome := 'per_tx';
        actual := least(v_actual, 9223372036854775807)::bigint;
        return next;
        return;
    end if;
    actual := v_actual::bigint;
    v_today := case when m.daily_earned_date = today then m.daily_earned_points else 0 end;
    earned_today := v_today;
    if v_today + actual > p_daily_limit then
        outcome := 'daily';
        return next;
        return;
    end if;

    if p_check_upgrade and p_amount is not null then
        select min(x.min_points) into v_next
          from member_levels x
         where x.is_active and x.level_order > m.level_order;
        if v_next is not null and m.total_spent + p_amount >= v_next then
            outcome := 'slow';
            return next;
            return;
        end if;
    end if;

    if exists (select 1 from point_batches b
                where b.user_id = p_user and b.available_points > 0 and b.expires_at <= p_now) then
        perform expire_member_batches(p_user, p_now);
    end if;

    update member_profiles p
       set available_points = p.available_points + actual,
           total_earned = p.total_earned + actual,
           total_spent = p.total_spent + coalesce(p_amount, 0),
           daily_earned_date = today,
           daily_earned_points = v_today + actual,
           updated_at = p_now
     where p.user_id = p_user
    returning p.available_points into v_balance;

    insert into point_transactions as t
           (user_id, transaction_type, points_change, balance_after, multiplier,
            requested_points, amount, reference_type, reference_id, description, created_at)
    values (p_user, 'earn', actual, v_balance, m.point_multiplier, p_base, p_amount,
            p_source_type, p_source_id, p_source_type || ' ' || p_source_id, p_now)
    returning t.id into v_tx;

    insert into point_batches
           (user_id, transaction_id, earned_points, available_points, expires_at, created_at)
    values (p_user, v_tx, actual, actual, p_expires_at, p_now);

    outcome := 'created';
    id := v_tx; user_id := p_user; transaction_type := 'earn'; points_change := actual;
    balance_after := v_balance; reference_type := p_source_type; reference_id := p_source_id;
    description := p_source_type || ' ' || p_source_id; status := 'completed';
    unrecovered := 0; created_at := p_now; requested_points := p_base; amount := p_amount;
    return next;
end;
$$;
