-- Group commit across members. earn_points_many (0028) ran the queued earns of one member;
-- it now takes each earn's member, so the earns of several members that arrived together
-- on one instance run as one statement in one transaction: one WAL flush and one round
-- trip for all of them. The caller sorts them by member, so every batch locks member rows
-- in the same (ascending) order as the expiry sweep and bulk grants, and two batches
-- cannot deadlock. Each earn is still earn_points_for_key exactly as it runs alone, in the
-- order given; item i of the answer is the i-th earn's row. If the statement fails,
-- nothing of it is written and the caller runs each earn alone.
drop function earn_points_many(
    text[], bigint, bigint[], numeric[], text[], text[], timestamptz[], text,
    timestamptz[], timestamptz[], bigint, bigint, boolean[]);

create function earn_points_many(
    p_key_hash text[], p_user bigint[], p_base bigint[], p_amount numeric[],
    p_source_type text[], p_source_id text[], p_now timestamptz[], p_tz text,
    p_expires_at timestamptz[], p_pending_until timestamptz[], p_max_per_tx bigint,
    p_daily_limit bigint, p_check_upgrade boolean[]
) returns table (
    item integer, outcome text, id bigint, user_id bigint, transaction_type text,
    points_change bigint, balance_after bigint, reference_type text, reference_id text,
    description text, status text, unrecovered bigint, created_at timestamptz,
    requested_points bigint, amount numeric, actual bigint, earned_today bigint
)
language plpgsql as $$
begin
    for i in 1 .. coalesce(array_length(p_base, 1), 0) loop
        return query
            select i, e.*
              from earn_points_for_key(p_key_hash[i], p_user[i], p_base[i], p_amount[i],
                       p_source_type[i], p_source_id[i], p_now[i], p_tz, p_expires_at[i],
                       p_pending_until[i], p_max_per_tx, p_daily_limit, p_check_upgrade[i]) e;
    end loop;
end;
$$;
