-- Ledger helpers run inside the caller's transaction. The caller must already hold the
-- member's row lock (select ... from member_profiles ... for update): every change to a
-- member's batches happens under that lock, so the batches need no lock of their own.

-- Take up to p_points from the member's live batches: first from p_first_batch (when
-- given and still live), then first-expiring-first. Each batch touched gets a
-- batch_deductions row for p_tx. Reads only the batches it consumes (the FOR loop walks
-- point_batches_fifo_idx and stops as soon as the amount is covered).
-- Returns the points taken (less than p_points only when the live balance is smaller).
create function consume_fifo(
    p_user bigint, p_points bigint, p_now timestamptz, p_tx bigint, p_first_batch bigint
) returns bigint
language plpgsql as $$
declare
    remaining bigint := p_points;
    take bigint;
    b record;
begin
    if p_first_batch is not null and remaining > 0 then
        select id, available_points into b
          from point_batches
         where id = p_first_batch and user_id = p_user
           and available_points > 0 and expires_at > p_now;
        if found then
            take := least(b.available_points, remaining);
            update point_batches set available_points = available_points - take where id = b.id;
            insert into batch_deductions (batch_id, transaction_id, points, created_at)
                 values (b.id, p_tx, take, p_now);
            remaining := remaining - take;
        end if;
    end if;
    if remaining > 0 then
        for b in select id, available_points
                   from point_batches
                  where user_id = p_user and available_points > 0 and expires_at > p_now
                  order by expires_at, id
        loop
            take := least(b.available_points, remaining);
            update point_batches set available_points = available_points - take where id = b.id;
            insert into batch_deductions (batch_id, transaction_id, points, created_at)
                 values (b.id, p_tx, take, p_now);
            remaining := remaining - take;
            exit when remaining = 0;
        end loop;
    end if;
    return p_points - remaining;
end;
$$;

-- Expire every batch of the member that is past its expiry and still holds points: one
-- 'expire' transaction for all of them, batches left at 0, totals updated.
-- Returns the points expired (0 when nothing was due: then nothing is written).
create function expire_member_batches(p_user bigint, p_now timestamptz)
returns bigint
language plpgsql as $$
declare
    total bigint;
    bal bigint;
    tx bigint;
begin
    select coalesce(sum(available_points), 0) into total
      from point_batches
     where user_id = p_user and available_points > 0 and expires_at <= p_now;
    if total = 0 then
        return 0;
    end if;
    update member_profiles
       set available_points = available_points - total,
           total_expired = total_expired + total,
           updated_at = p_now
     where user_id = p_user
    returning available_points into bal;
    insert into point_transactions
           (user_id, transaction_type, points_change, balance_after, description, created_at)
    values (p_user, 'expire', -total, bal, 'points expired', p_now)
    returning id into tx;
    insert into batch_deductions (batch_id, transaction_id, points, created_at)
    select id, tx, available_points, p_now
      from point_batches
     where user_id = p_user and available_points > 0 and expires_at <= p_now;
    update point_batches set available_points = 0
     where user_id = p_user and available_points > 0 and expires_at <= p_now;
    return total;
end;
$$;

-- The first statement of every points operation: lock the member's row, expire what is
-- due (so balances never include points past their expiry), and return what the
-- operation needs, in one round trip. No row when the member does not exist.
create function lock_member(p_user bigint, p_now timestamptz, p_tz text)
returns table (
    user_id bigint,
    level_id integer,
    level_order integer,
    point_multiplier numeric,
    next_min_points integer,
    total_spent numeric,
    available_points bigint,
    earned_today bigint,
    business_date date,
    last_level_change_at timestamptz,
    expired bigint
)
language plpgsql as $$
#variable_conflict use_column
declare
    n_expired bigint;
    today date := (p_now at time zone p_tz)::date;
begin
    perform 1 from member_profiles m where m.user_id = p_user for update;
    if not found then
        return;
    end if;
    n_expired := expire_member_batches(p_user, p_now);
    return query
        select p.user_id, p.level_id, l.level_order, l.point_multiplier,
               (select min(x.min_points) from member_levels x
                 where x.is_active and x.level_order > l.level_order),
               p.total_spent, p.available_points,
               case when p.daily_earned_date = today then p.daily_earned_points else 0::bigint end,
               today, p.last_level_change_at, n_expired
          from member_profiles p
          join member_levels l on l.id = p.level_id
         where p.user_id = p_user;
end;
$$;
