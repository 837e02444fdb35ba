-- Whose each browser session is, so a password reset or an account close ends the
-- account's sessions on every browser (the session rows themselves are the session
-- store's, their data opaque to SQL). A row goes when its session goes.
create table user_sessions (
    session_id text primary key references tower_sessions.session (id) on delete cascade,
    user_id    bigint not null references users (id)
);
create index user_sessions_user_idx on user_sessions (user_id);
