-- Tier lifecycle (issue 13 §3). A level is qualified for by the spend of a window
-- (lifetime, the calendar year, or the last N months), kept until the end of its retention
-- period, and reviewed then (after an optional grace period): the member keeps it, drops one
-- level, or drops to the level their window spend reaches. Members are told before a drop.
--
-- Window spend is counted, never summed from the ledger, so reading a window costs at most
-- its months whatever the member's history:
--   member_profiles.month_spent  the spend of the member's latest business month
--                                (spend_month), written by the earn's own update of the
--                                row (no extra write on the hot path)
--   member_monthly_spend         earlier months: a month's counter moves here when the
--                                member's next earn falls in a later month; a return adds
--                                a negative amount to the month its order was placed in
--                                (the trigger below, whichever code path wrote it)
-- A month's spend is the sum of its rows plus the counter when it is that month. Business
-- months are in MEMBER_TIMEZONE, which the portal passes to every connection it opens as
-- the setting `member.timezone` (db::connect_options).

create table member_monthly_spend (
    user_id bigint not null references member_profiles (user_id),
    -- first day of the business month
    month   date not null check (extract(day from month) = 1),
    -- may be negative: a return of an order of the month still counted on the profile
    spent   numeric(14, 2) not null,
    primary key (user_id, month)
);

alter table member_profiles
    add column spend_month date check (extract(day from spend_month) = 1),
    add column month_spent numeric(14, 2) not null default 0;

create function member_timezone() returns text
language sql stable as $$
    select coalesce(nullif(current_setting('member.timezone', true), ''), 'Asia/Shanghai')
$$;

create function record_return_spend() returns trigger
language plpgsql as $$
declare
    v_at timestamptz;
begin
    -- a return lowers the spend of the month the order was placed in
    select t.created_at into v_at
      from point_transactions t
     where t.transaction_type = 'earn' and t.reference_type = new.reference_type
       and t.reference_id = new.reference_id and coalesce(t.sub_reference, '') = '';
    insert into member_monthly_spend as s (user_id, month, spent)
    values (new.user_id,
            date_trunc('month', coalesce(v_at, new.created_at) at time zone member_timezone())::date,
            -new.amount)
    on conflict (user_id, month) do update set spent = s.spent + excluded.spent;
    return null;
end;
$$;

create trigger point_transactions_return_spend
    after insert on point_transactions
    for each row
    when (new.amount is not null and new.transaction_type = 'reverse')
    execute function record_return_spend();

-- An earn in a later month than the profile's counter moves the counter to the table first
-- (the earn's update of the row then starts the new month's counter). In the earn's
-- transaction, the member's row locked.
create function roll_spend_month(p_user bigint, p_month date) returns void
language sql as $$
    insert into member_monthly_spend as s (user_id, month, spent)
    select p.user_id, p.spend_month, p.month_spent
      from member_profiles p
     where p.user_id = p_user and p.spend_month <> p_month and p.month_spent <> 0
    on conflict (user_id, month) do update set spent = s.spent + excluded.spent
$$;

-- An API key as the earn statement checks it: 'ok', 'unknown' (no such key, or revoked) or
-- 'scope' (the key may not do this; scopes come with migration 0021). last_used_at is
-- refreshed at most once a minute, as use_api_key does.
create function api_key_check(p_key_hash text, p_scope text, p_now timestamptz) returns text
language plpgsql as $$
begin
    update api_keys a set last_used_at = p_now
     where a.key_hash = p_key_hash and a.revoked_at is null
       and (a.last_used_at is null or a.last_used_at < p_now - interval '1 minute');
    if found or exists (select 1 from api_keys a
                         where a.key_hash = p_key_hash and a.revoked_at is null) then
        return 'ok';
    end if;
    return 'unknown';
end;
$$;

-- The one-statement earn of migration 0005, now also counting the order amount into the
-- member's month, and asking api_key_check about the key (the current body of
-- earn_points is this one).
create or replace function earn_points(
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
    v_month date := date_trunc('month', p_now at time zone p_tz)::date;
    m record;
    k record;
    v_actual numeric;
    v_today bigint;
    v_next integer;
    v_balance bigint;
    v_tx bigint;
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
            outcome := 'slow';
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
    update member_profiles p
       set available_points = p.available_points + actual,
           total_earned = p.total_earned + actual,
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

-- what has happened so far
insert into member_monthly_spend (user_id, month, spent)
select t.user_id, date_trunc('month', coalesce(e.created_at, t.created_at) at time zone member_timezone())::date,
       sum(case t.transaction_type when 'earn' then t.amount else -t.amount end)
  from point_transactions t
  left join point_transactions e
    on t.transaction_type = 'reverse' and e.transaction_type = 'earn'
   and e.reference_type = t.reference_type and e.reference_id = t.reference_id
   and coalesce(e.sub_reference, '') = ''
 where t.amount is not null and t.transaction_type in ('earn', 'reverse')
 group by 1, 2;

-- The business months whose spend counts at an instant, first and last.
--   calendar_year  January of that year to that month
--   rolling        that month and the p_months - 1 before it
create function qualifying_months(p_at timestamptz, p_window text, p_months integer, p_tz text,
                                  out first_month date, out last_month date)
language sql stable as $$
    select case p_window
               when 'calendar_year' then date_trunc('year', p_at at time zone p_tz)::date
               else (date_trunc('month', p_at at time zone p_tz)
                     - make_interval(months => greatest(p_months, 1) - 1))::date
           end,
           date_trunc('month', p_at at time zone p_tz)::date
$$;

-- A member's qualifying spend at an instant (lifetime: total_spent).
create function window_spend(p_user bigint, p_at timestamptz, p_window text, p_months integer,
                             p_tz text)
returns numeric
language sql stable as $$
    select case when p_window = 'lifetime' then p.total_spent
                else greatest(
                    coalesce((select sum(s.spent) from member_monthly_spend s
                               where s.user_id = p_user
                                 and s.month between w.first_month and w.last_month), 0)
                    + case when p.spend_month between w.first_month and w.last_month
                           then p.month_spent else 0 end, 0)
           end
      from member_profiles p, qualifying_months(p_at, p_window, p_months, p_tz) w
     where p.user_id = p_user
$$;

-- When a level reached (or kept) at an instant ends:
--   next_calendar_year  the end of the calendar year after it
--   months              p_months months later
create function retention_end(p_reached timestamptz, p_retention text, p_months integer,
                              p_tz text)
returns timestamptz
language sql stable as $$
    select case p_retention
               when 'next_calendar_year'
               then (date_trunc('year', p_reached at time zone p_tz) + interval '2 years')
                    at time zone p_tz
               else p_reached + make_interval(months => p_months)
           end
$$;

alter table member_profiles
    -- the current level's retention ends (null: kept for good, as with the lifetime window,
    -- the entry level or a level set by hand without an end date)
    add column level_kept_until timestamptz,
    -- when the level is reviewed: retention end + grace, later if the notice was late
    add column level_review_at timestamptz,
    -- the level was set by hand by staff (until level_kept_until, if set)
    add column level_manual boolean not null default false,
    -- the review a downgrade notice was sent for
    add column downgrade_notice_for timestamptz;
create index member_profiles_review_idx on member_profiles (level_review_at, user_id)
    where level_review_at is not null;

update member_profiles p set level_manual = true
 where (select r.change_reason from level_change_records r
         where r.user_id = p.user_id order by r.id desc limit 1) = 'manual';

alter table level_change_records drop constraint level_change_records_change_reason_check;
alter table level_change_records add constraint level_change_records_change_reason_check
    check (change_reason in ('auto_upgrade', 'manual', 'recalculate', 'review'));

-- One batch of the level review, members in (level_review_at, user_id) order after the
-- cursor, up to p_now + p_notice. Each member's row is locked; for each:
--   spend     the greater of the window that ends with the retention period and the one
--             at the review (a grace period's spend counts)
--   kept      the spend reaches the level: retention starts again (outcome 'kept')
--   noticed   it does not, and no notice was sent for this review: a notification
--             `level.will_downgrade` (the outbox, so the webhook too); a review already due
--             (the notice could not go out before it) is put off until p_notice from now,
--             so nobody drops unwarned
--   dropped   the review is due and was noticed: one level down or to the level the spend
--             reaches (p_policy), with a history row (reason `review`) and `level.downgraded`
--   passed    the review is not due, and the member keeps or was told already
-- Every member read is returned, so the last row is the next batch's cursor.
create function review_levels(
    p_now timestamptz, p_after_at timestamptz, p_after_user bigint, p_limit integer,
    p_window text, p_window_months integer, p_retention text, p_retention_months integer,
    p_policy text, p_grace interval, p_notice interval, p_tz text
) returns table (user_id bigint, review_at timestamptz, outcome text)
language sql as $$
with due as (
    select p.user_id, p.level_id, p.level_kept_until, p.level_review_at,
           p.downgrade_notice_for, p.total_spent, p.spend_month, p.month_spent,
           l.level_order, l.min_points, l.level_name,
           -- the retention period's last instant: its window is the one that counts
           coalesce(p.level_kept_until, p.level_review_at) - interval '1 microsecond' as ended
      from member_profiles p
      join member_levels l on l.id = p.level_id
     where p.level_review_at <= p_now + p_notice
       and (p.level_review_at, p.user_id) > (p_after_at, p_after_user)
       -- told already and not due yet: nothing to do until the review
       and (p.downgrade_notice_for is distinct from p.level_review_at
            or p.level_review_at <= p_now)
     order by p.level_review_at, p.user_id
     limit p_limit
       for update of p
), spend as (
    select d.*,
           case when p_window = 'lifetime' then d.total_spent
                else greatest(
                    (select coalesce(sum(s.spent), 0) from member_monthly_spend s
                      where s.user_id = d.user_id
                        and s.month between d.ended_first and d.ended_last)
                    + case when d.spend_month between d.ended_first and d.ended_last
                           then d.month_spent else 0 end,
                    (select coalesce(sum(s.spent), 0) from member_monthly_spend s
                      where s.user_id = d.user_id
                        and s.month between d.review_first and d.review_last)
                    + case when d.spend_month between d.review_first and d.review_last
                           then d.month_spent else 0 end,
                    0)
           end as spent
      from (select d.*, e.first_month as ended_first, e.last_month as ended_last,
                   r.first_month as review_first, r.last_month as review_last
              from due d,
                   qualifying_months(d.ended, p_window, p_window_months, p_tz) e,
                   qualifying_months(d.level_review_at, p_window, p_window_months, p_tz) r) d
), decided as (
    select x.*,
           case when x.reach_level_order >= x.level_order then
                    case when x.level_review_at <= p_now then 'kept' else 'passed' end
                when p_notice > interval '0'
                     and x.downgrade_notice_for is distinct from x.level_review_at then 'noticed'
                when x.level_review_at > p_now then 'passed'
                else 'dropped'
           end as outcome
      from (select sp.*, r.id as reach_id, r.level_order as reach_level_order,
                   b.id as below_id, b.level_order as below_order
              from spend sp
             cross join lateral (select l.id, l.level_order from member_levels l
                                  where l.is_active and l.min_points <= sp.spent
                                  order by l.level_order desc limit 1) r
              left join lateral (select l.id, l.level_order from member_levels l
                                  where l.is_active and l.level_order < sp.level_order
                                  order by l.level_order desc limit 1) b on true) x
), planned as (
    select d.user_id, d.level_id, d.level_review_at, d.level_kept_until, d.outcome, d.spent,
           d.level_name, d.min_points, t.id as target_id, t.level_name as target_name,
           t.benefits as target_benefits,
           -- told within the notice period before the review; a review already due (the
           -- notice could not go out before it) waits until the notice period has passed
           case when d.level_review_at <= p_now then p_now + p_notice
                else d.level_review_at end as notice_review,
           -- the retention that starts again (kept) or that of the lower level (dropped)
           case when p_window = 'lifetime'
                     or (case when d.outcome = 'kept' then d.level_order else t.level_order end)
                        = (select min(l.level_order) from member_levels l where l.is_active)
                then null
                else retention_end(d.ended, p_retention, p_retention_months, p_tz)
           end as new_kept
      from decided d
      join member_levels t
        on t.id = case when p_policy = 'drop_one' and d.below_order > d.reach_level_order
                       then d.below_id else d.reach_id end
), changed as (
    update member_profiles p
       set level_id = case when x.outcome = 'dropped' then x.target_id else p.level_id end,
           last_level_change_at = case when x.outcome = 'dropped' then p_now
                                       else p.last_level_change_at end,
           upgrade_due_at = case when x.outcome = 'dropped' then null else p.upgrade_due_at end,
           level_kept_until = case when x.outcome = 'noticed' then p.level_kept_until
                                   else x.new_kept end,
           level_review_at = case when x.outcome = 'noticed' then x.notice_review
                                  else x.new_kept + p_grace end,
           level_manual = case when x.outcome = 'noticed' then p.level_manual else false end,
           downgrade_notice_for = case when x.outcome = 'noticed' then x.notice_review end,
           updated_at = p_now
      from planned x
     where p.user_id = x.user_id and x.outcome <> 'passed'
), history as (
    insert into level_change_records
           (user_id, old_level_id, new_level_id, change_reason, note, change_date)
    select x.user_id, x.level_id, x.target_id, 'review',
           format('qualifying spend %s is below %s (%s)', round(x.spent, 2), x.level_name,
                  x.min_points),
           p_now
      from planned x where x.outcome = 'dropped'
), told as (
    insert into notifications (user_id, kind, payload, created_at, next_attempt_at)
    select x.user_id,
           case x.outcome when 'noticed' then 'level.will_downgrade' else 'level.downgraded' end,
           case x.outcome
               when 'noticed' then jsonb_build_object(
                   'level', x.level_name, 'new_level', x.target_name,
                   'review_at', x.notice_review, 'kept_until', x.level_kept_until,
                   -- the last business day whose spend adds up: a calendar year's spend
                   -- counts to its end, a rolling window's to the review
                   'by', to_char((case when p_window = 'calendar_year'
                                       then least(x.level_kept_until, x.notice_review)
                                       else x.notice_review end
                                  - interval '1 microsecond') at time zone p_tz, 'YYYY-MM-DD'),
                   'spent', round(x.spent, 2)::text,
                   'needed', round(greatest(x.min_points - x.spent, 0), 2)::text)
               else jsonb_build_object(
                   'old_level', x.level_name, 'new_level', x.target_name,
                   'benefits', x.target_benefits, 'spent', round(x.spent, 2)::text)
           end,
           p_now, p_now
      from planned x where x.outcome in ('noticed', 'dropped')
)
select x.user_id, x.level_review_at, x.outcome
  from planned x
 order by x.level_review_at, x.user_id
$$;

-- Recalculation (staff) reads the qualifying spend of the program's window and the
-- member's own flag for a level set by hand.
drop function recalculation_candidates(timestamptz);
create function recalculation_candidates(p_recent_after timestamptz, p_now timestamptz,
                                         p_window text, p_months integer, p_tz text)
returns table (user_id bigint, member_code text, total_spent numeric, from_id integer,
               to_id integer, up boolean, manual boolean, recent boolean)
language sql stable as $$
    select p.user_id, p.member_code, q.spent, p.level_id, t.id,
           t.level_order > lo.level_order,
           p.level_manual,
           coalesce(p.last_level_change_at > p_recent_after, false)
      from member_profiles p
      join member_levels lo on lo.id = p.level_id
     cross join lateral (select case when p_window = 'lifetime' then p.total_spent
                                     else window_spend(p.user_id, p_now, p_window, p_months, p_tz)
                                end as spent) q
     cross join lateral (select l.id, l.level_order from member_levels l
                          where l.is_active and l.min_points <= q.spent
                          order by l.level_order desc limit 1) t
     where t.id <> p.level_id
$$;
