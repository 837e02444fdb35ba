-- Login throttling counts per (account, client address) and per client address, so a
-- stranger's wrong guesses cannot lock the owner out, and one client cannot spray many
-- accounts. Keys: 'a:<email>|<ip>' and 'c:<ip>'. An attempt is counted before its
-- password is checked (and given back when it succeeds), so parallel guesses are counted.
delete from login_failures;
alter table login_failures rename column email_key to throttle_key;
alter table login_failures rename column failures to attempts;
alter table login_failures add constraint login_failures_key_length check (length(throttle_key) <= 400);
create index login_failures_window_idx on login_failures (window_start);
