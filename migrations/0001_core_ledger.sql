-- Core ledger of Member Portal: users, levels, member profiles, point batches and
-- transactions, level history, notification outbox, audit log and API keys.
-- Every timestamp is written by the application from its (injectable) clock.

create table users (
    id            bigint generated always as identity primary key,
    email         text not null check (length(email) between 3 and 254),
    password_hash text not null,
    role          text not null default 'member' check (role in ('member', 'staff')),
    display_name  text not null check (length(display_name) between 1 and 100),
    created_at    timestamptz not null,
    updated_at    timestamptz not null
);
-- Emails are unique whatever their case.
create unique index users_email_key on users (lower(email));

create table member_levels (
    id               integer generated always as identity primary key,
    level_name       varchar(50) not null check (length(btrim(level_name)) >= 1),
    level_order      integer not null,
    min_points       integer not null check (min_points >= 0),
    discount_rate    numeric(4, 3) not null check (discount_rate > 0 and discount_rate <= 1),
    point_multiplier numeric(4, 2) not null check (point_multiplier >= 1 and point_multiplier <= 10),
    benefits         jsonb not null default '[]' check (jsonb_typeof(benefits) = 'array'),
    is_active        boolean not null default true,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint member_levels_level_name_key unique (level_name),
    constraint member_levels_level_order_key unique (level_order)
);
create index member_levels_min_points_idx on member_levels (min_points);

insert into member_levels (level_name, level_order, min_points, discount_rate, point_multiplier, benefits) values
    ('普通会员', 1, 0, 1.000, 1.00, '["积分累计", "生日祝福"]'),
    ('银牌会员', 2, 1000, 0.980, 1.20, '["98折优惠", "积分1.2倍", "生日礼券"]'),
    ('金牌会员', 3, 5000, 0.950, 1.50, '["95折优惠", "积分1.5倍", "专属客服", "免费配送"]'),
    ('钻石会员', 4, 20000, 0.900, 2.00, '["9折优惠", "积分2倍", "专属客服", "免费配送", "新品优先购"]');

-- Member codes are M + business date + a gap-free sequence of that day. The counter row
-- is locked by the insert that takes the next number, so a rolled-back sign-up returns it.
create table member_code_counters (
    business_date date primary key,
    last_seq      integer not null check (last_seq between 1 and 99999)
);

create table member_profiles (
    user_id               bigint primary key references users (id) on delete restrict,
    member_code           text not null,
    level_id              integer not null references member_levels (id),
    total_spent           numeric(12, 2) not null default 0 check (total_spent >= 0),
    available_points      bigint not null default 0 check (available_points >= 0),
    total_earned          bigint not null default 0 check (total_earned >= 0),
    total_used            bigint not null default 0 check (total_used >= 0),
    total_expired         bigint not null default 0 check (total_expired >= 0),
    total_reversed        bigint not null default 0 check (total_reversed >= 0),
    total_refunded        bigint not null default 0 check (total_refunded >= 0),
    -- net of staff adjustments, may be negative
    total_adjusted        bigint not null default 0,
    -- counter for the daily earn limit: points earned on daily_earned_date (business day)
    daily_earned_date     date,
    daily_earned_points   bigint not null default 0 check (daily_earned_points >= 0),
    last_level_change_at  timestamptz,
    -- set when an upgrade was deferred by the cooldown: when it may be applied
    upgrade_due_at        timestamptz,
    created_at            timestamptz not null,
    updated_at            timestamptz not null,
    constraint member_profiles_member_code_key unique (member_code)
);
create index member_profiles_level_id_idx on member_profiles (level_id);
create index member_profiles_upgrade_due_idx on member_profiles (upgrade_due_at)
    where upgrade_due_at is not null;

create table point_transactions (
    id                bigint generated always as identity primary key,
    user_id           bigint not null references member_profiles (user_id),
    transaction_type  text not null
        check (transaction_type in ('earn', 'use', 'expire', 'adjust', 'reverse', 'refund')),
    points_change     bigint not null,
    balance_after     bigint not null check (balance_after >= 0),
    -- the level multiplier applied (earn) so reversals use the rate of that day
    multiplier        numeric(4, 2),
    -- earn: base points requested; use: points requested; reverse: points to take back
    requested_points  bigint,
    -- earn: order amount; reverse: amount returned
    amount            numeric(12, 2) check (amount > 0),
    reference_type    text,
    reference_id      text,
    -- reverse: refund id telling partial returns apart ('' for a full reversal)
    sub_reference     text,
    -- reverse: points that could not be taken back because the balance was too low
    unrecovered       bigint not null default 0 check (unrecovered >= 0),
    -- earn: how much of it has been reversed so far
    reversed_points   bigint not null default 0 check (reversed_points >= 0),
    reversed_amount   numeric(12, 2) not null default 0 check (reversed_amount >= 0),
    -- use: set once it has been refunded
    refunded          boolean not null default false,
    description       text not null default '',
    status            text not null default 'completed' check (status in ('completed')),
    actor_user_id     bigint references users (id),
    created_at        timestamptz not null,
    check (transaction_type not in ('earn', 'refund') or points_change > 0),
    check (transaction_type not in ('use', 'expire', 'reverse') or points_change <= 0),
    check (transaction_type <> 'use' or points_change < 0)
);
-- Idempotency: one earn per source, one use per usage reference, one refund per use,
-- one reversal per (source, refund id). Not partial: lookups pass the type as a parameter,
-- and a generic plan could not prove a partial predicate. Rows without a reference
-- (expire, adjust) never collide, as NULLs are distinct.
create unique index point_transactions_idempotency_key
    on point_transactions (transaction_type, reference_type, reference_id, coalesce(sub_reference, ''));
-- History by member, newest first, keyset on id.
create index point_transactions_user_id_idx on point_transactions (user_id, id desc);
create index point_transactions_user_type_idx on point_transactions (user_id, transaction_type, id desc);
create index point_transactions_created_at_idx on point_transactions (created_at);

create table point_batches (
    id               bigint generated always as identity primary key,
    user_id          bigint not null references member_profiles (user_id),
    transaction_id   bigint not null references point_transactions (id),
    earned_points    bigint not null check (earned_points > 0),
    available_points bigint not null check (available_points >= 0 and available_points <= earned_points),
    expires_at       timestamptz not null,
    reminder_sent_at timestamptz,
    created_at       timestamptz not null,
    constraint point_batches_transaction_id_key unique (transaction_id)
);
-- FIFO and "expiring soon": live batches of a member by expiry.
create index point_batches_fifo_idx on point_batches (user_id, expires_at, id)
    where available_points > 0;
-- Expiry sweep over all members.
create index point_batches_expiry_idx on point_batches (expires_at)
    where available_points > 0;
create index point_batches_reminder_idx on point_batches (expires_at)
    where available_points > 0 and reminder_sent_at is null;

-- What each transaction took from (positive) or gave back to (negative) each batch.
create table batch_deductions (
    id             bigint generated always as identity primary key,
    batch_id       bigint not null references point_batches (id),
    transaction_id bigint not null references point_transactions (id),
    points         bigint not null check (points <> 0),
    created_at     timestamptz not null
);
create index batch_deductions_batch_id_idx on batch_deductions (batch_id);
create index batch_deductions_transaction_id_idx on batch_deductions (transaction_id);

create table level_change_records (
    id             bigint generated always as identity primary key,
    user_id        bigint not null references member_profiles (user_id),
    old_level_id   integer references member_levels (id),
    new_level_id   integer not null references member_levels (id),
    change_reason  text not null check (change_reason in ('auto_upgrade', 'manual')),
    note           text,
    actor_user_id  bigint references users (id),
    change_date    timestamptz not null
);
create index level_change_records_user_idx on level_change_records (user_id, id desc);

-- Outbox: written in the transaction that causes it, delivered afterwards.
create table notifications (
    id              bigint generated always as identity primary key,
    user_id         bigint not null references users (id),
    kind            text not null,
    payload         jsonb not null,
    created_at      timestamptz not null,
    read_at         timestamptz,
    delivered_at    timestamptz,
    attempts        integer not null default 0,
    next_attempt_at timestamptz
);
create index notifications_user_idx on notifications (user_id, id desc);
create index notifications_unread_idx on notifications (user_id) where read_at is null;
create index notifications_undelivered_idx on notifications (next_attempt_at, id) where delivered_at is null;

create table audit_log (
    id            bigint generated always as identity primary key,
    actor_user_id bigint references users (id),
    action        text not null,
    target_type   text,
    target_id     text,
    details       jsonb not null default '{}',
    created_at    timestamptz not null
);
create index audit_log_created_idx on audit_log (id desc);

create table api_keys (
    id            bigint generated always as identity primary key,
    name          text not null check (length(name) between 1 and 100),
    -- hex SHA-256 of the key; the key itself is shown once and never stored
    key_hash      text not null,
    key_prefix    text not null,
    created_by    bigint references users (id),
    created_at    timestamptz not null,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    constraint api_keys_key_hash_key unique (key_hash)
);
