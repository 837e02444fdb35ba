-- The ledger's CHECK constraints, each kept, as one guard function per table.
--
-- PostgreSQL 15 reads a table's CHECK constraints back from their stored text and plans
-- them again for every statement that writes the table (ExecRelCheck), not once per
-- session. An earn writes three tables with 32 of them, and that was about a sixth of
-- PostgreSQL's time per earn (docs/benchmarks.md, seventh session). A PL/pgSQL function
-- is compiled once per session, so each table now has one constraint, <table>_guard,
-- calling a function that tests every condition the dropped constraints tested, with the
-- same result for every row: a row passes when no condition is false (a condition on a
-- null column passes, as in a CHECK). A row that fails raises check_violation naming the
-- dropped constraint, so errors read and match (`on_constraint`) as before.

create function guard_failed(p_table text, p_constraint text) returns boolean
language plpgsql as $$
begin
    raise exception 'new row for relation "%" violates check constraint "%"', p_table, p_constraint
        using errcode = 'check_violation', table = p_table, constraint = p_constraint;
end;
$$;

-- The transaction types the code knows (domain::TransactionType::ALL; a test compares).
create function point_transaction_types() returns text[]
language sql immutable parallel safe as $$
    select array['earn', 'use', 'expire', 'adjust', 'reverse', 'refund', 'release']
$$;

create function point_transactions_guard(
    p_type text, p_change bigint, p_balance bigint, p_amount numeric, p_unrecovered bigint,
    p_reversed_points bigint, p_reversed_amount numeric, p_shortfall bigint, p_bonus bigint,
    p_status text
) returns boolean
language plpgsql immutable as $$
declare
    t constant text := 'point_transactions';
begin
    if not (p_type = any (point_transaction_types())) then
        return guard_failed(t, 'point_transactions_transaction_type_check');
    end if;
    if not (p_status = any (array['completed', 'pending', 'settled'])) then
        return guard_failed(t, 'point_transactions_status_check');
    end if;
    if not (p_status = 'completed' or p_type = any (array['earn', 'reverse'])) then
        return guard_failed(t, 'point_transactions_pending_kinds');
    end if;
    if not (p_type <> 'earn' or p_change > 0) then
        return guard_failed(t, 'point_transactions_earn_positive');
    end if;
    if not (p_type <> 'release' or p_change > 0) then
        return guard_failed(t, 'point_transactions_release_positive');
    end if;
    if not (p_type <> 'refund' or p_change >= 0) then
        return guard_failed(t, 'point_transactions_refund_not_negative');
    end if;
    if not (p_type <> all (array['use', 'expire', 'reverse']) or p_change <= 0) then
        return guard_failed(t, 'point_transactions_check1');
    end if;
    if not (p_type <> 'use' or p_change < 0) then
        return guard_failed(t, 'point_transactions_check2');
    end if;
    if not (p_balance >= 0) then
        return guard_failed(t, 'point_transactions_balance_after_check');
    end if;
    if not (p_amount > 0) then
        return guard_failed(t, 'point_transactions_amount_check');
    end if;
    if not (p_unrecovered >= 0) then
        return guard_failed(t, 'point_transactions_unrecovered_check');
    end if;
    if not (p_reversed_points >= 0) then
        return guard_failed(t, 'point_transactions_reversed_points_check');
    end if;
    if not (p_reversed_amount >= 0) then
        return guard_failed(t, 'point_transactions_reversed_amount_check');
    end if;
    if not (p_shortfall >= 0) then
        return guard_failed(t, 'point_transactions_reversal_shortfall_check');
    end if;
    if not (p_bonus >= 0) then
        return guard_failed(t, 'point_transactions_bonus_points_check');
    end if;
    return true;
end;
$$;

create function member_profiles_guard(
    p_total_earned bigint, p_total_spent numeric, p_available bigint, p_total_used bigint,
    p_total_expired bigint, p_total_reversed bigint, p_total_refunded bigint,
    p_daily_earned bigint, p_pending bigint, p_phone text, p_external_id text,
    p_spend_month date
) returns boolean
language plpgsql immutable as $$
declare
    t constant text := 'member_profiles';
begin
    if not (p_available >= 0) then
        return guard_failed(t, 'member_profiles_available_points_check');
    end if;
    if not (p_pending >= 0) then
        return guard_failed(t, 'member_profiles_pending_points_check');
    end if;
    if not (p_total_earned >= 0) then
        return guard_failed(t, 'member_profiles_total_earned_check');
    end if;
    if not (p_total_spent >= 0) then
        return guard_failed(t, 'member_profiles_total_spent_check');
    end if;
    if not (p_total_used >= 0) then
        return guard_failed(t, 'member_profiles_total_used_check');
    end if;
    if not (p_total_expired >= 0) then
        return guard_failed(t, 'member_profiles_total_expired_check');
    end if;
    if not (p_total_reversed >= 0) then
        return guard_failed(t, 'member_profiles_total_reversed_check');
    end if;
    if not (p_total_refunded >= 0) then
        return guard_failed(t, 'member_profiles_total_refunded_check');
    end if;
    if not (p_daily_earned >= 0) then
        return guard_failed(t, 'member_profiles_daily_earned_points_check');
    end if;
    if not (p_phone ~ '^\+?[0-9][0-9 -]{3,30}$') then
        return guard_failed(t, 'member_profiles_phone_check');
    end if;
    if not (length(btrim(p_external_id)) >= 1) then
        return guard_failed(t, 'member_profiles_external_id_check');
    end if;
    if not (extract(day from p_spend_month) = 1) then
        return guard_failed(t, 'member_profiles_spend_month_check');
    end if;
    return true;
end;
$$;

create function point_batches_guard(
    p_earned bigint, p_available bigint, p_pending bigint, p_pending_until timestamptz
) returns boolean
language plpgsql immutable as $$
declare
    t constant text := 'point_batches';
begin
    if not (p_earned > 0) then
        return guard_failed(t, 'point_batches_earned_points_check');
    end if;
    if not (p_available >= 0 and p_available <= p_earned) then
        return guard_failed(t, 'point_batches_check');
    end if;
    if not (p_pending >= 0) then
        return guard_failed(t, 'point_batches_pending_points_check');
    end if;
    if not (p_available + p_pending <= p_earned) then
        return guard_failed(t, 'point_batches_held_within_earned');
    end if;
    if not (p_pending = 0 or p_pending_until is not null) then
        return guard_failed(t, 'point_batches_pending_has_date');
    end if;
    return true;
end;
$$;

alter table point_transactions
    drop constraint point_transactions_transaction_type_check,
    drop constraint point_transactions_status_check,
    drop constraint point_transactions_pending_kinds,
    drop constraint point_transactions_earn_positive,
    drop constraint point_transactions_release_positive,
    drop constraint point_transactions_refund_not_negative,
    drop constraint point_transactions_check1,
    drop constraint point_transactions_check2,
    drop constraint point_transactions_balance_after_check,
    drop constraint point_transactions_amount_check,
    drop constraint point_transactions_unrecovered_check,
    drop constraint point_transactions_reversed_points_check,
    drop constraint point_transactions_reversed_amount_check,
    drop constraint point_transactions_reversal_shortfall_check,
    drop constraint point_transactions_bonus_points_check,
    add constraint point_transactions_guard check (point_transactions_guard(
        transaction_type, points_change, balance_after, amount, unrecovered, reversed_points,
        reversed_amount, reversal_shortfall, bonus_points, status));

alter table member_profiles
    drop constraint member_profiles_available_points_check,
    drop constraint member_profiles_pending_points_check,
    drop constraint member_profiles_total_earned_check,
    drop constraint member_profiles_total_spent_check,
    drop constraint member_profiles_total_used_check,
    drop constraint member_profiles_total_expired_check,
    drop constraint member_profiles_total_reversed_check,
    drop constraint member_profiles_total_refunded_check,
    drop constraint member_profiles_daily_earned_points_check,
    drop constraint member_profiles_phone_check,
    drop constraint member_profiles_external_id_check,
    drop constraint member_profiles_spend_month_check,
    add constraint member_profiles_guard check (member_profiles_guard(
        total_earned, total_spent, available_points, total_used, total_expired,
        total_reversed, total_refunded, daily_earned_points, pending_points, phone,
        external_id, spend_month));

alter table point_batches
    drop constraint point_batches_earned_points_check,
    drop constraint point_batches_check,
    drop constraint point_batches_pending_points_check,
    drop constraint point_batches_held_within_earned,
    drop constraint point_batches_pending_has_date,
    add constraint point_batches_guard check (point_batches_guard(
        earned_points, available_points, pending_points, pending_until));

-- The API's earn with the ledger's earn inline. earn_points_for_key (0026) checked the key
-- and then ran `return query select * from earn_points(...)`: a nested statement, a second
-- function call and a tuple store for each earn, 3-7 % of PostgreSQL's time per earn.
-- Same arguments, same answers, same statements in the same order; earn_points() had no
-- other caller and goes.
create or replace function earn_points_for_key(
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
    -- the key (its SHA-256 hash; null for trusted callers), checked by api_key_check (0021)
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

drop function earn_points(bigint, bigint, numeric, text, text, timestamptz, text,
    timestamptz, timestamptz, bigint, bigint, boolean);
