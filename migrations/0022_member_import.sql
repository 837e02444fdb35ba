-- Importing members from a CSV file (issue 13 §5): `member-portal import-members`. The
-- rows the portal read and checked arrive by COPY in member_import_rows; the checks that
-- need the database (an email, external id or member code taken, in the file or already)
-- mark rows there; then one transaction turns the good rows into members, each with an
-- opening balance (an `adjust` credit and its batch) and opening spend.

create table member_imports (
    id          bigint generated always as identity primary key,
    file_name   text not null,
    -- all_or_nothing or skip_bad_rows
    mode        text not null check (mode in ('all_or_nothing', 'skip_bad_rows')),
    rows_read   bigint not null default 0,
    rows_bad    bigint not null default 0,
    imported    bigint not null default 0,
    status      text not null default 'reading'
        check (status in ('reading', 'done', 'refused')),
    created_at  timestamptz not null,
    finished_at timestamptz
);

-- Staging: written by COPY, emptied when the import ends.
create unlogged table member_import_rows (
    import_id    bigint not null,
    line         bigint not null,
    email        text not null,
    display_name text not null,
    phone        text,
    external_id  text,
    member_code  text,
    points       bigint not null,
    total_spent  numeric(12, 2) not null,
    error        text,
    primary key (import_id, line)
);

-- Marks the rows the database refuses; returns how many.
create function import_members_check(p_import bigint) returns bigint
language plpgsql as $$
declare
    n bigint;
begin
    update member_import_rows r set error = 'email: another line of the file has this email'
      from (select line, row_number() over (partition by lower(email) order by line) as k
              from member_import_rows where import_id = p_import) d
     where r.import_id = p_import and r.line = d.line and d.k > 1;
    update member_import_rows r set error = 'email: a member or staff account has this email'
     where r.import_id = p_import and r.error is null
       and exists (select 1 from users u where lower(u.email) = lower(r.email));
    update member_import_rows r set error = 'external_id: another line of the file has it'
      from (select line, row_number() over (partition by external_id order by line) as k
              from member_import_rows where import_id = p_import and external_id is not null) d
     where r.import_id = p_import and r.line = d.line and d.k > 1 and r.error is null;
    update member_import_rows r set error = 'external_id: another member has it'
     where r.import_id = p_import and r.error is null and r.external_id is not null
       and exists (select 1 from member_profiles p where p.external_id = r.external_id);
    update member_import_rows r set error = 'member_code: another line of the file has it'
      from (select line, row_number() over (partition by member_code order by line) as k
              from member_import_rows where import_id = p_import and member_code is not null) d
     where r.import_id = p_import and r.line = d.line and d.k > 1 and r.error is null;
    update member_import_rows r set error = 'member_code: another member has it'
     where r.import_id = p_import and r.error is null and r.member_code is not null
       and exists (select 1 from member_profiles p where p.member_code = r.member_code);
    select count(*) into n from member_import_rows where import_id = p_import and error is not null;
    return n;
end;
$$;

-- The good rows become members: users (no password yet: a set-password link is for them
-- to ask), profiles on the level their spend reaches (its retention as an upgrade gives),
-- member codes from the file or M + business date + the day's sequence, and the opening
-- balance as an `adjust` credit (reference import/<id>/<line>) with its batch. Returns
-- the members made.
create function import_members_finish(
    p_import bigint, p_now timestamptz, p_tz text, p_expires timestamptz,
    p_window text, p_retention text, p_retention_months integer, p_grace interval
) returns bigint
language plpgsql as $$
declare
    v_today date := (p_now at time zone p_tz)::date;
    v_month date := date_trunc('month', p_now at time zone p_tz)::date;
    v_generated bigint;
    v_first bigint := 0;
    v_lowest integer;
    n bigint;
begin
    select count(*) into v_generated from member_import_rows
     where import_id = p_import and error is null and member_code is null;
    if v_generated > 0 then
        insert into member_code_counters as c (business_date, last_seq)
        values (v_today, v_generated)
        on conflict (business_date) do update set last_seq = c.last_seq + v_generated
        returning last_seq - v_generated into v_first;
    end if;
    select min(level_order) into v_lowest from member_levels where is_active;

    create temp table import_new on commit drop as
    select r.*, nextval(pg_get_serial_sequence('users', 'id')) as user_id,
           coalesce(r.member_code,
                    'M' || to_char(v_today, 'YYYYMMDD')
                        || lpad((v_first + row_number() over (partition by r.member_code is null
                                                               order by r.line))::text, 5, '0'))
               as code
      from member_import_rows r
     where r.import_id = p_import and r.error is null;

    insert into users (id, email, password_hash, role, display_name, created_at, updated_at)
    overriding system value
    select user_id, email, '!', 'member', display_name, p_now, p_now from import_new;

    insert into member_profiles
           (user_id, member_code, level_id, total_spent, available_points, total_adjusted,
            spend_month, month_spent, phone, external_id, last_level_change_at,
            level_kept_until, level_review_at, created_at, updated_at)
    select n.user_id, n.code, l.id, n.total_spent, n.points, n.points,
           case when n.total_spent > 0 then v_month end, n.total_spent, n.phone, n.external_id,
           null, k.until, k.until + p_grace, p_now, p_now
      from import_new n
     cross join lateral (select x.id, x.level_order from member_levels x
                          where x.is_active and x.min_points <= n.total_spent
                          order by x.level_order desc limit 1) l
     cross join lateral (select case when p_window = 'lifetime' or l.level_order = v_lowest
                                     then null
                                     else retention_end(p_now, p_retention, p_retention_months, p_tz)
                                end as until) k;

    with t as (
        insert into point_transactions
               (user_id, transaction_type, points_change, balance_after, reference_type,
                reference_id, sub_reference, description, created_at)
        select user_id, 'adjust', points, points, 'import', p_import::text, line::text,
               'opening balance (import ' || p_import || ')', p_now
          from import_new where points > 0
        returning id, user_id, points_change
    )
    insert into point_batches (user_id, transaction_id, earned_points, available_points,
                               expires_at, created_at)
    select user_id, id, points_change, points_change, p_expires, p_now from t;

    select count(*) into n from import_new;
    return n;
end;
$$;
