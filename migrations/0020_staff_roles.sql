-- Staff roles (issue 13 §5): admin (everything), operator (members, points, rewards,
-- campaigns, bulk grants; not levels, staff accounts or API keys), viewer (reads only).
-- Every staff account there was is an admin.
alter table users add column staff_role text check (staff_role in ('admin', 'operator', 'viewer'));
update users set staff_role = 'admin' where role = 'staff';
-- (a role left on an account that is no longer staff gives it nothing: staff pages read the
-- role only of an enabled staff account)
alter table users add constraint users_staff_has_a_role
    check (role <> 'staff' or staff_role is not null);
