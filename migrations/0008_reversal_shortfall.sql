-- A reversal that could not take back all of an earn's points (the member had spent
-- them) leaves a shortfall on the earn. A later refund of a use that drew on that earn's
-- batch settles the shortfall first and returns only the rest, so points of a returned
-- order never come back through a cancelled checkout.
alter table point_transactions
    add column reversal_shortfall bigint not null default 0 check (reversal_shortfall >= 0);

-- Shortfalls of reversals made before this migration.
update point_transactions e
   set reversal_shortfall = r.unrecovered
  from (select user_id, reference_type, reference_id, sum(unrecovered)::bigint as unrecovered
          from point_transactions
         where transaction_type = 'reverse' and unrecovered > 0
         group by user_id, reference_type, reference_id) r
 where e.transaction_type = 'earn' and e.user_id = r.user_id
   and e.reference_type = r.reference_type and e.reference_id = r.reference_id;

-- A refund that only settles a shortfall returns no points.
alter table point_transactions drop constraint point_transactions_check;
alter table point_transactions
    add constraint point_transactions_earn_positive check (transaction_type <> 'earn' or points_change > 0),
    add constraint point_transactions_refund_not_negative check (transaction_type <> 'refund' or points_change >= 0);
