-- Earning campaigns (issue 13 §2): time-boxed multipliers and fixed bonuses on earns,
-- sign-up and birthday bonuses. Every bonus is its own `earn` line with its own batch,
-- reference_type 'campaign' and the campaign's id as reference_id (so each campaign pays
-- each order, sign-up or birthday once), pointing at the order's earn (parent_id). The
-- order's earn carries the sum of its bonus lines (bonus_points): a reversal of the order
-- takes back its share of both.

create table campaigns (
    id           integer generated always as identity primary key,
    name         varchar(100) not null check (length(btrim(name)) >= 1),
    kind         text not null check (kind in ('multiplier', 'bonus', 'signup', 'birthday')),
    -- multiplier and bonus: the earns it applies to (null: any)
    source_type  varchar(100),
    category     varchar(100),
    -- multiplier: the points of the order × this (a bonus line of the points above ×1)
    multiplier   numeric(4, 2) check (multiplier > 1 and multiplier <= 10),
    -- bonus, signup, birthday: a fixed number of points
    bonus_points bigint check (bonus_points between 1 and 1000000),
    -- bonus: the least order amount that gets it (null: any earn)
    min_amount   numeric(12, 2) check (min_amount > 0),
    starts_at    timestamptz not null,
    ends_at      timestamptz not null,
    created_at   timestamptz not null,
    updated_at   timestamptz not null,
    check (ends_at > starts_at),
    check ((kind = 'multiplier') = (multiplier is not null)),
    check ((kind = 'multiplier') = (bonus_points is null)),
    check (kind in ('multiplier', 'bonus') or (source_type is null and category is null)),
    check (kind = 'bonus' or min_amount is null)
);
create index campaigns_ends_at_idx on campaigns (ends_at);

alter table point_transactions
    add column campaign_id integer references campaigns (id),
    add column parent_id bigint references point_transactions (id),
    add column bonus_points bigint not null default 0 check (bonus_points >= 0);
create index point_transactions_parent_idx on point_transactions (parent_id)
    where parent_id is not null;

-- entered once by the member; the birthday bonus is paid once a year on that day
alter table member_profiles add column birthday date;
create index member_profiles_birthday_idx
    on member_profiles ((extract(month from birthday)), (extract(day from birthday)))
    where birthday is not null;
