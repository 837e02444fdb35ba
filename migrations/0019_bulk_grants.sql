-- Bulk grants (issue 13 §5): staff give points to every member a filter finds, with a
-- reason, as one audited operation. The grant is a row; each member's credit is an `adjust`
-- transaction with reference ('bulk_grant', grant id, member id), so the idempotency key of
-- point_transactions lets nobody be granted twice by the same grant, however often it is
-- resumed; and the grant's own key (from the form) lets a form sent twice start one grant.

create table bulk_grants (
    id               bigint generated always as identity primary key,
    idempotency_key  text not null check (length(idempotency_key) between 8 and 100),
    points           bigint not null check (points > 0),
    reason           text not null check (length(btrim(reason)) between 1 and 500),
    -- the member list's filter, as the staff set it
    filter           jsonb not null,
    -- members the filter found when the grant started
    members_expected bigint not null default 0,
    members_done     bigint not null default 0,
    -- the last member reached (the list runs newest first, by user id)
    cursor_user_id   bigint,
    status           text not null default 'running' check (status in ('running', 'done')),
    actor_user_id    bigint references users (id),
    created_at       timestamptz not null,
    updated_at       timestamptz not null,
    finished_at      timestamptz,
    constraint bulk_grants_idempotency_key unique (idempotency_key)
);

-- One batch of a grant: each member's row locked (in id order), their due points expired
-- first (as every points operation does), then the credit, its batch, and a `points.granted`
-- notification. Members granted by this grant already are passed over. Returns how many
-- were granted; the grant's progress is moved on in the same transaction.
create function bulk_grant_batch(
    p_grant bigint, p_users bigint[], p_cursor bigint, p_points bigint, p_reason text,
    p_actor bigint, p_now timestamptz, p_expires timestamptz
) returns integer
language plpgsql as $$
declare
    v_user bigint;
    v_balance bigint;
    v_tx bigint;
    n integer := 0;
begin
    foreach v_user in array (select coalesce(array_agg(u order by u), '{}')
                               from unnest(p_users) u) loop
        perform 1 from member_profiles m where m.user_id = v_user for update;
        if not found then
            continue;
        end if;
        if exists (select 1 from point_transactions t
                    where t.transaction_type = 'adjust' and t.reference_type = 'bulk_grant'
                      and t.reference_id = p_grant::text
                      and coalesce(t.sub_reference, '') = v_user::text) then
            continue;
        end if;
        perform expire_member_batches(v_user, p_now);
        update member_profiles m
           set available_points = m.available_points + p_points,
               total_adjusted = m.total_adjusted + p_points,
               updated_at = p_now
         where m.user_id = v_user
        returning m.available_points into v_balance;
        insert into point_transactions
               (user_id, transaction_type, points_change, balance_after, reference_type,
                reference_id, sub_reference, description, actor_user_id, created_at)
        values (v_user, 'adjust', p_points, v_balance, 'bulk_grant', p_grant::text,
                v_user::text, p_reason, p_actor, p_now)
        returning id into v_tx;
        insert into point_batches
               (user_id, transaction_id, earned_points, available_points, expires_at, created_at)
        values (v_user, v_tx, p_points, p_points, p_expires, p_now);
        insert into notifications (user_id, kind, payload, created_at, next_attempt_at)
        values (v_user, 'points.granted',
                jsonb_build_object('points', p_points, 'reason', p_reason, 'grant_id', p_grant),
                p_now, p_now);
        n := n + 1;
    end loop;
    update bulk_grants g
       set members_done = g.members_done + n, cursor_user_id = p_cursor, updated_at = p_now
     where g.id = p_grant;
    return n;
end;
$$;
