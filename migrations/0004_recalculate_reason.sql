-- Staff may recalculate everyone's level from their spend (SPEC §4.1 /admin/levels).
alter table level_change_records drop constraint level_change_records_change_reason_check;
alter table level_change_records add constraint level_change_records_change_reason_check
    check (change_reason in ('auto_upgrade', 'manual', 'recalculate'));
create index audit_log_target_idx on audit_log (target_type, target_id);
