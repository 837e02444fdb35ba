-- Every earn, use and expiry updates the member's profile row. An index on a column that
-- changes (available_points, migration 0017) made each of those updates a non-HOT one:
-- a new entry in every index of member_profiles (five for a member without phone or
-- birthday), more WAL, and indexes that bloat with the ledger's history. Without it the
-- update changes no indexed column, so PostgreSQL keeps it on the same page (HOT) when
-- there is room, which the lower fillfactor leaves.
--
-- The member list's points filter does not need it: its conditions are written
-- "$3 is null or available_points >= $3" for one prepared statement, which PostgreSQL's
-- generic plan cannot serve from an index anyway, and the list is read newest first by
-- user_id (keyset) with the count beside it.
drop index member_profiles_available_idx;
alter table member_profiles set (fillfactor = 90);
