-- The upgrade an earn caused, as its first reply carried it: a replay of the earn answers
-- the same (SPEC §4.2), even after the level's name or benefits have changed.
alter table point_transactions add column upgrade jsonb;
