-- API key scopes (issue 13 §5): what an integration's key may do.
--   earn     create members, earn points, reverse earns on returns
--   use      use points, refund uses
--   read     every GET of the API
--   coupons  redeem rewards, validate, consume, release and cancel coupons
-- Keys made before keep every scope.
alter table api_keys
    add column scopes text[] not null default '{earn,use,read,coupons}'
        check (scopes <@ '{earn,use,read,coupons}' and cardinality(scopes) >= 1);

create or replace function api_key_check(p_key_hash text, p_scope text, p_now timestamptz)
returns text
language plpgsql as $$
declare
    v_scopes text[];
begin
    update api_keys a set last_used_at = p_now
     where a.key_hash = p_key_hash and a.revoked_at is null
       and (a.last_used_at is null or a.last_used_at < p_now - interval '1 minute');
    select a.scopes into v_scopes from api_keys a
     where a.key_hash = p_key_hash and a.revoked_at is null;
    if not found then
        return 'unknown';
    end if;
    return case when p_scope = any(v_scopes) then 'ok' else 'scope' end;
end;
$$;
