-- Staff can disable an account: it can no longer log in, and a staff account's open
-- sessions lose their power at the next request (pages check the account, not the role
-- the session remembers).
alter table users add column disabled_at timestamptz;
