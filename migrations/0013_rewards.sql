-- Rewards catalogue and coupons (issue 13 §1). A redemption is a `use` of points with
-- reference_type 'reward' and the redemption id as reference_id (so it is idempotent like
-- any use), the reward's stock taken and a coupon issued, in one transaction that locks
-- the member's row first and the reward's row second. Cancelling a coupon refunds that
-- use into its original batches and puts the stock back.

create table rewards (
    id                integer generated always as identity primary key,
    name              varchar(100) not null check (length(btrim(name)) >= 1),
    description       varchar(500) not null default '',
    -- amount: value is yuan off; percent: value is percent off; item: a free item, no value
    kind              text not null check (kind in ('amount', 'percent', 'item')),
    value             numeric(12, 2),
    points_cost       bigint not null check (points_cost between 1 and 1000000000),
    -- what is left to redeem; null: no limit
    stock             integer check (stock >= 0),
    -- coupons issued and not cancelled
    issued            integer not null default 0 check (issued >= 0),
    per_member_limit  integer check (per_member_limit >= 1),
    min_level_id      integer references member_levels (id),
    starts_at         timestamptz,
    ends_at           timestamptz,
    -- a coupon is valid this many days from its redemption
    coupon_valid_days integer not null default 30 check (coupon_valid_days between 1 and 3650),
    is_active         boolean not null default true,
    created_at        timestamptz not null,
    updated_at        timestamptz not null,
    check ((kind = 'item') = (value is null)),
    check (kind <> 'amount' or value > 0),
    check (kind <> 'percent' or (value > 0 and value < 100)),
    check (ends_at is null or starts_at is null or ends_at > starts_at)
);
create index rewards_catalogue_idx on rewards (points_cost, id) where is_active;

create table coupons (
    id                    bigint generated always as identity primary key,
    -- 16 characters of Crockford base32 (80 random bits), stored without separators
    code                  text not null check (code ~ '^[0-9A-HJKMNP-TV-Z]{16}$'),
    reward_id             integer not null references rewards (id),
    user_id               bigint not null references member_profiles (user_id),
    -- the reward's terms when it was redeemed; later edits of the reward do not change them
    title                 varchar(100) not null,
    kind                  text not null check (kind in ('amount', 'percent', 'item')),
    value                 numeric(12, 2),
    points                bigint not null check (points > 0),
    -- the redemption's `use` transaction (reference_type 'reward', reference_id = this)
    redemption_id         text not null,
    transaction_id        bigint not null references point_transactions (id),
    status                text not null check (status in ('issued', 'consumed', 'cancelled')),
    expires_at            timestamptz not null,
    order_id              text check (length(order_id) between 1 and 100),
    consumed_at           timestamptz,
    refund_transaction_id bigint references point_transactions (id),
    cancelled_at          timestamptz,
    created_at            timestamptz not null,
    updated_at            timestamptz not null,
    constraint coupons_code_key unique (code),
    constraint coupons_transaction_id_key unique (transaction_id),
    check ((status = 'consumed') = (order_id is not null and consumed_at is not null)),
    check ((status = 'cancelled') = (refund_transaction_id is not null and cancelled_at is not null))
);
create index coupons_user_idx on coupons (user_id, id desc);
create index coupons_reward_member_idx on coupons (reward_id, user_id) where status <> 'cancelled';
