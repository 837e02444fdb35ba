-- Pending points (issue 13 §4): with POINTS_PENDING_DAYS > 0 an earn's points wait out the
-- return window before they can be spent. The ledger then has two parts:
--   completed  what the member can spend: available_points = Σ batches' available_points
--              = Σ points_change of completed transactions
--   pending    earned, not yet released: pending_points = Σ batches' pending_points
--              = Σ points_change of pending transactions (the earns, and reversals of them
--              inside the window)
-- A `release` transaction moves a member's due pending batches to completed: their
-- earns and pending reversals become `settled` (their points are in the release). A
-- return inside the window takes the points back from the pending batches: nothing was
-- spendable, so nothing can be lost.

alter table point_batches
    add column pending_points bigint not null default 0 check (pending_points >= 0),
    add column pending_until timestamptz,
    add constraint point_batches_held_within_earned
        check (available_points + pending_points <= earned_points),
    add constraint point_batches_pending_has_date
        check (pending_points = 0 or pending_until is not null);
create index point_batches_pending_idx on point_batches (pending_until)
    where pending_points > 0;
create index point_batches_member_pending_idx on point_batches (user_id, pending_until)
    where pending_points > 0;

alter table member_profiles
    add column pending_points bigint not null default 0 check (pending_points >= 0);

alter table point_transactions
    drop constraint point_transactions_transaction_type_check,
    add constraint point_transactions_transaction_type_check check (transaction_type in
        ('earn', 'use', 'expire', 'adjust', 'reverse', 'refund', 'release')),
    drop constraint point_transactions_status_check,
    add constraint point_transactions_status_check
        check (status in ('completed', 'pending', 'settled')),
    add constraint point_transactions_release_positive
        check (transaction_type <> 'release' or points_change > 0),
    add constraint point_transactions_pending_kinds
        check (status = 'completed' or transaction_type in ('earn', 'reverse'));
