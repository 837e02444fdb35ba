-- Staff tools (issue 13 §5): members carry an optional phone and the integrator's own
-- customer id (external_id, unique), and staff find members by part of a name or email.

alter table member_profiles
    add column phone varchar(32) check (phone ~ '^\+?[0-9][0-9 -]{3,30}$'),
    add column external_id varchar(100) check (length(btrim(external_id)) >= 1);
create unique index member_profiles_external_id_key on member_profiles (external_id)
    where external_id is not null;
create index member_profiles_phone_idx on member_profiles (phone) where phone is not null;
create index member_profiles_created_at_idx on member_profiles (created_at);
create index member_profiles_available_idx on member_profiles (available_points);

-- "part of a name or email": trigram indexes (pg_trgm is a trusted extension)
create extension if not exists pg_trgm;
create index users_email_trgm_idx on users using gin (lower(email) gin_trgm_ops);
create index users_display_name_trgm_idx on users using gin (lower(display_name) gin_trgm_ops);
