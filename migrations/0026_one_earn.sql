-- One earn implementation. earn_points() is the ledger's earn and nothing else: it no
-- longer checks API keys (earn_points_for_key below does, in the same round trip), and it
-- writes pending points itself (p_pending_until, the return window), so the Rust side no
-- longer repeats the multiplier, the caps, the idempotency lookup or the writes.
--
-- An earn the statement cannot finish alone comes back as outcome 'upgrade' (with
-- p_check_upgrade, the order amount reaches the next level) before any write; the caller
-- then runs the same statement with p_check_upgrade false inside a transaction that locked
-- the member, followed by the upgrade and any campaign bonuses.
drop function earn_points(bigint, bigint, numeric, text, text, timestamptz, text, timestamptz,
                          bigint, bigint, boolean, text);

create function earn_points(
    p_user bigint, p_base bigint, p_amount numeric, p_source_type text, p_source_id text,
    p_now timestamptz, p_tz text, p_expires_at timestamptz, p_pending_until timestamptz,
    p_max_per_tx bigint, p_daily_limit bigint, p_check_upgrade boolean
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
    v_month date := date_trunc('month', p_now at time zone p_tz)::date;
    v_pending boolean := p_pending_until is not null;
    m record;
    k record;
    v_actual numeric;
    v_today bigint;
    v_credit bigint;
    v_next integer;
    v_balance bigint;
    v_tx bigint;
begin
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
           l.point_multiplier, p.spend_month, p.month_spent
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
            outcome := 'upgrade';
            return next;
            return;
        end if;
    end if;

    if exists (select 1 from point_batches b
                where b.user_id = p_user and b.available_points > 0 and b.expires_at <= p_now) then
        perform expire_member_batches(p_user, p_now);
    end if;

    if p_amount is not null and m.spend_month <> v_month and m.month_spent <> 0 then
        perform roll_spend_month(p_user, v_month);
    end if;
    -- pending points wait out the return window before they count (release_pending)
    v_credit := case when v_pending then 0 else actual end;
    update member_profiles p
       set available_points = p.available_points + v_credit,
           total_earned = p.total_earned + v_credit,
           pending_points = p.pending_points + (actual - v_credit),
           total_spent = p.total_spent + coalesce(p_amount, 0),
           month_spent = case when p_amount is null then p.month_spent
                              when p.spend_month = v_month then p.month_spent + p_amount
                              else p_amount end,
           spend_month = case when p_amount is null then p.spend_month else v_month end,
           daily_earned_date = today,
           daily_earned_points = v_today + actual,
           updated_at = p_now
     where p.user_id = p_user
    returning p.available_points into v_balance;

    status := case when v_pending then 'pending' else 'completed' end;
    insert into point_transactions as t
           (user_id, transaction_type, points_change, balance_after, multiplier,
            requested_points, amount, reference_type, reference_id, description, created_at,
            status)
    values (p_user, 'earn', actual, v_balance, m.point_multiplier, p_base, p_amount,
            p_source_type, p_source_id, p_source_type || ' ' || p_source_id, p_now, status)
    returning t.id into v_tx;

    insert into point_batches
           (user_id, transaction_id, earned_points, available_points, pending_points,
            pending_until, expires_at, created_at)
    values (p_user, v_tx, actual, v_credit, actual - v_credit, p_pending_until, p_expires_at,
            p_now);

    outcome := 'created';
    id := v_tx; user_id := p_user; transaction_type := 'earn'; points_change := actual;
    balance_after := v_balance; reference_type := p_source_type; reference_id := p_source_id;
    description := p_source_type || ' ' || p_source_id;
    unrecovered := 0; created_at := p_now; requested_points := p_base; amount := p_amount;
    return next;
end;
$$;

-- The API's earn: the key (its SHA-256 hash; null for trusted callers) checked by
-- api_key_check (migration 0021) and the earn, in one round trip.
create function earn_points_for_key(
    p_key_hash text,
    p_user bigint, p_base bigint, p_amount numeric, p_source_type text, p_source_id text,
    p_now timestamptz, p_tz text, p_expires_at timestamptz, p_pending_until timestamptz,
    p_max_per_tx bigint, p_daily_limit bigint, p_check_upgrade boolean
) returns table (
    outcome text, id bigint, user_id bigint, transaction_type text, points_change bigint,
    balance_after bigint, reference_type text, reference_id text, description text,
    status text, unrecovered bigint, created_at timestamptz,
    requested_points bigint, amount numeric, actual bigint, earned_today bigint
)
language plpgsql as $$
begin
    if p_key_hash is not null then
        case api_key_check(p_key_hash, 'earn', p_now)
            when 'unknown' then outcome := 'unauthorized';
            when 'scope' then outcome := 'forbidden';
            else null;
        end case;
        if outcome is not null then
            return next;
            return;
        end if;
    end if;
    return query select * from earn_points(p_user, p_base, p_amount, p_source_type,
        p_source_id, p_now, p_tz, p_expires_at, p_pending_until, p_max_per_tx,
        p_daily_limit, p_check_upgrade);
end;
$$;
