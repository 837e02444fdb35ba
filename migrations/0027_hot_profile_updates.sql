-- Every earn, use and expiry updates the member's profile row. An index on a column that
-- changes (available_points, migration 0017) made each of those updates a non-HOT one:
-- a new entry in every index of member_profiles (five for a member without phone or
-- birthday), more WAL, and indexes that bloat with the ledger's history. Without it the
-- update changes no indexed column, so PostgreSQL keeps it on the same page (HOT) when
-- there is room, which the lower fillfactor leaves.
--
-- What loses it is the staff member list's points filter, written
-- "$3 is null or available_points >= $3" for one prepared statement: it could use the
-- index only while PostgreSQL planned for the values given, never under the generic plan;
-- a narrow points range over many members now reads the table, on a staff page.
drop index member_profiles_available_idx;
alter table member_profiles set (fillfactor = 90);
