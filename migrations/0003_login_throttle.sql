-- Failed logins per email (known or not, so throttling reveals nothing about accounts):
-- failures counted in a window that starts with the first failure.
create table login_failures (
    email_key    text primary key,
    window_start timestamptz not null,
    failures     integer not null check (failures >= 0)
);

-- Sessions (tower-sessions-sqlx-store's layout), so they survive a Redis flush or restart.
create schema if not exists tower_sessions;
create table tower_sessions.session (
    id          text primary key not null,
    data        bytea not null,
    expiry_date timestamptz not null
);
create index session_expiry_idx on tower_sessions.session (expiry_date);
