-- Member accounts (issue 13 §6): one-time links to set or reset a password, delivered
-- through the outbox; closing an account anonymises its user row (the ledger keeps its
-- rows, now tied to no one named).

create table account_tokens (
    id         bigint generated always as identity primary key,
    user_id    bigint not null references users (id),
    -- SHA-256 of the token in the link; the token itself is never stored
    token_hash text not null,
    purpose    text not null check (purpose in ('reset', 'set')),
    created_at timestamptz not null,
    expires_at timestamptz not null,
    used_at    timestamptz,
    constraint account_tokens_token_hash_key unique (token_hash)
);
create index account_tokens_user_idx on account_tokens (user_id, created_at desc);

alter table users add column closed_at timestamptz;

-- password links also go by email where SMTP_URL is set (the email job's own state)
alter table notifications
    add column emailed_at timestamptz,
    add column email_attempts integer not null default 0;
create index notifications_email_due_idx on notifications (id)
    where kind = 'member.password_reset' and emailed_at is null;
