//! The ledger's invariants (SPEC §3.7) as set queries over the whole database, or one
//! member: each row that breaks one becomes a [`Violation`] with its member and figures.

use sqlx::PgConnection;

use crate::domain::ledger::Violation;

/// Every violation in the ledger of every member, or of one; none when every invariant holds.
pub async fn violations(
    conn: &mut PgConnection,
    only: Option<i64>,
) -> sqlx::Result<Vec<Violation>> {
    let mut out = Vec::new();

    for r in sqlx::query!(
        r#"select p.user_id, p.available_points, p.pending_points,
                  coalesce(b.pending, 0)::bigint as "pending_batches!",
                  coalesce(t.pending, 0)::bigint as "pending_ledger!",
                  coalesce(b.left_points, 0)::bigint as "batches!",
                  coalesce(t.net, 0)::bigint as "ledger!",
                  p.total_earned - p.total_used - p.total_expired + p.total_adjusted
                    - p.total_reversed + p.total_refunded as "counters!",
                  coalesce(t.earned, 0)::bigint as "earned!", p.total_earned,
                  coalesce(t.used, 0)::bigint as "used!", p.total_used,
                  coalesce(t.expired, 0)::bigint as "expired!", p.total_expired,
                  coalesce(t.adjusted, 0)::bigint as "adjusted!", p.total_adjusted,
                  coalesce(t.reversed, 0)::bigint as "reversed!", p.total_reversed,
                  coalesce(t.refunded, 0)::bigint as "refunded!", p.total_refunded,
                  (select balance_after from point_transactions x
                    where x.user_id = p.user_id order by x.id desc limit 1) as last_balance
             from member_profiles p
             left join (select user_id, sum(available_points) as left_points,
                               sum(pending_points) as pending
                          from point_batches group by user_id) b on b.user_id = p.user_id
             left join (select user_id,
                               sum(points_change) filter (where status = 'completed') as net,
                               sum(points_change) filter (where status = 'pending') as pending,
                               sum(points_change) filter (where transaction_type in ('earn', 'release')
                                                          and status = 'completed') as earned,
                               -sum(points_change) filter (where transaction_type = 'use') as used,
                               -sum(points_change) filter (where transaction_type = 'expire') as expired,
                               sum(points_change) filter (where transaction_type = 'adjust') as adjusted,
                               -sum(points_change) filter (where transaction_type = 'reverse'
                                                           and status = 'completed') as reversed,
                               sum(points_change) filter (where transaction_type = 'refund') as refunded
                          from point_transactions group by user_id) t on t.user_id = p.user_id
            where $1::bigint is null or p.user_id = $1
            order by p.user_id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let mut flag = |invariant: &'static str, details: String| {
            out.push(Violation { user_id: Some(r.user_id), invariant, details })
        };
        let a = r.available_points;
        if a != r.batches {
            flag("available = Σ batch points left", format!("available {a}, batches hold {}", r.batches));
        }
        if r.pending_points != r.pending_batches || r.pending_points != r.pending_ledger {
            flag(
                "pending = Σ batch pending points = Σ pending points_change",
                format!(
                    "pending {}, batches hold {}, pending transactions sum to {}",
                    r.pending_points, r.pending_batches, r.pending_ledger
                ),
            );
        }
        if a != r.ledger {
            flag("available = Σ points_change", format!("available {a}, transactions sum to {}", r.ledger));
        }
        if a != r.counters {
            flag("earned − used − expired ± adjusted − reversed + refunded = available",
                format!("counters give {}, available {a}", r.counters));
        }
        for (name, by_tx, counter) in [
            ("total_earned", r.earned, r.total_earned),
            ("total_used", r.used, r.total_used),
            ("total_expired", r.expired, r.total_expired),
            ("total_adjusted", r.adjusted, r.total_adjusted),
            ("total_reversed", r.reversed, r.total_reversed),
            ("total_refunded", r.refunded, r.total_refunded),
        ] {
            if by_tx != counter {
                flag("counters match transactions", format!("{name} is {counter}, transactions give {by_tx}"));
            }
        }
        if let Some(last) = r.last_balance {
            if last != a {
                flag("last balance_after = available", format!("last balance_after {last}, available {a}"));
            }
        }
    }

    for r in sqlx::query!(
        r#"select b.id, b.user_id, b.earned_points, b.available_points, b.pending_points,
                  coalesce(d.taken, 0)::bigint as "taken!"
             from point_batches b
             left join (select batch_id, sum(points) as taken from batch_deductions group by batch_id) d
                    on d.batch_id = b.id
            where ($1::bigint is null or b.user_id = $1)
              and (b.available_points < 0 or b.available_points + b.pending_points > b.earned_points
                   or b.earned_points - b.available_points - b.pending_points <> coalesce(d.taken, 0))
            order by b.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        out.push(Violation {
            user_id: Some(r.user_id),
            invariant: "0 ≤ batch points ≤ earned, and deductions add up to what it lost",
            details: format!(
                "batch {}: earned {}, left {}, pending {}, deductions {}",
                r.id, r.earned_points, r.available_points, r.pending_points, r.taken
            ),
        });
    }

    for r in sqlx::query!(
        r#"select t.id, t.user_id, t.transaction_type, t.points_change,
                  coalesce(d.taken, 0)::bigint as "taken!"
             from point_transactions t
             left join (select transaction_id, sum(points) as taken from batch_deductions
                         group by transaction_id) d on d.transaction_id = t.id
            where (t.transaction_type in ('use', 'expire', 'reverse', 'refund')
                   or (t.transaction_type = 'adjust' and t.points_change < 0))
              and t.points_change <> -coalesce(d.taken, 0)
              and ($1::bigint is null or t.user_id = $1)
            order by t.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        out.push(Violation {
            user_id: Some(r.user_id),
            invariant: "a transaction's batch movements equal its points_change",
            details: format!(
                "{} transaction {}: points_change {}, batches moved {}",
                r.transaction_type, r.id, r.points_change, -r.taken
            ),
        });
    }

    for r in sqlx::query!(
        r#"select t.id, t.user_id, t.points_change, b.earned_points as "earned?"
             from point_transactions t
             left join point_batches b on b.transaction_id = t.id
            where (t.transaction_type = 'earn' or (t.transaction_type = 'adjust' and t.points_change > 0))
              and (b.id is null or b.earned_points <> t.points_change)
              and ($1::bigint is null or t.user_id = $1)
            order by t.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        out.push(Violation {
            user_id: Some(r.user_id),
            invariant: "every credit has its batch",
            details: format!(
                "transaction {}: credited {}, batch holds {:?}",
                r.id, r.points_change, r.earned
            ),
        });
    }
    // rewards (migration 0013): a coupon and its redemption are one.
    for r in sqlx::query!(
        r#"select c.id, c.user_id, c.status, c.points,
                  t.id as "use_id?", t.user_id as "use_user?", t.points_change as "use_points?",
                  t.reference_type as "use_type?", t.reference_id as "use_ref?",
                  f.id as "refund_id?"
             from coupons c
             left join point_transactions t on t.id = c.transaction_id
             left join point_transactions f
                    on f.transaction_type = 'refund' and f.reference_type = 'reward'
                   and f.reference_id = c.redemption_id
            where ($1::bigint is null or c.user_id = $1)
              and (t.id is null or t.transaction_type <> 'use' or t.user_id <> c.user_id
                   or t.points_change <> -c.points or t.reference_type is distinct from 'reward'
                   or t.reference_id is distinct from c.redemption_id
                   or (c.status = 'cancelled') <> (f.id is not null)
                   or (c.status = 'cancelled' and f.id is distinct from c.refund_transaction_id))
            order by c.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        out.push(Violation {
            user_id: Some(r.user_id),
            invariant: "a coupon is its redemption: a use of its points, refunded once cancelled",
            details: format!(
                "coupon {} ({}, {} points): use {:?} of {:?} points by {:?} ({:?} {:?}), refund {:?}",
                r.id, r.status, r.points, r.use_id, r.use_points, r.use_user, r.use_type,
                r.use_ref, r.refund_id
            ),
        });
    }

    for r in sqlx::query!(
        r#"select t.id, t.user_id, t.reference_id
             from point_transactions t
            where t.transaction_type = 'use' and t.reference_type = 'reward'
              and ($1::bigint is null or t.user_id = $1)
              and not exists (select 1 from coupons c where c.transaction_id = t.id)
            order by t.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        out.push(Violation {
            user_id: Some(r.user_id),
            invariant: "every redemption has its coupon",
            details: format!(
                "use {} (redemption {:?}) issued no coupon",
                r.id, r.reference_id
            ),
        });
    }

    if only.is_none() {
        for r in sqlx::query!(
            r#"select r.id, r.issued, coalesce(c.n, 0)::integer as "held!"
                 from rewards r
                 left join (select reward_id, count(*) as n from coupons
                             where status <> 'cancelled' group by reward_id) c on c.reward_id = r.id
                where r.issued <> coalesce(c.n, 0)
                order by r.id"#
        )
        .fetch_all(&mut *conn)
        .await?
        {
            out.push(Violation {
                user_id: None,
                invariant: "a reward's issued count = its coupons not cancelled",
                details: format!("reward {}: issued {}, coupons {}", r.id, r.issued, r.held),
            });
        }
    }
    // campaigns (migration 0014): an order's earn carries the sum of its bonus lines, and
    // every bonus line says which campaign paid it
    for r in sqlx::query!(
        r#"select e.id, e.user_id, e.bonus_points, coalesce(c.sum, 0)::bigint as "lines!"
             from point_transactions e
             left join (select parent_id, sum(points_change) as sum from point_transactions
                         where parent_id is not null and transaction_type = 'earn'
                         group by parent_id) c on c.parent_id = e.id
            where ($1::bigint is null or e.user_id = $1)
              and e.transaction_type = 'earn' and e.parent_id is null
              and (e.bonus_points > 0 or c.sum is not null)
              and e.bonus_points <> coalesce(c.sum, 0)
            order by e.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        out.push(Violation {
            user_id: Some(r.user_id),
            invariant: "an earn's bonus_points = the points of its bonus lines",
            details: format!(
                "earn {}: bonus_points {}, bonus lines {}",
                r.id, r.bonus_points, r.lines
            ),
        });
    }
    for r in sqlx::query!(
        r#"select t.id, t.user_id from point_transactions t
            where ($1::bigint is null or t.user_id = $1)
              and (t.campaign_id is not null or t.reference_type = 'campaign'
                   or (t.parent_id is not null and t.transaction_type = 'earn'))
              and (t.transaction_type <> 'earn' or t.campaign_id is null
                   or t.reference_type is distinct from 'campaign'
                   or t.reference_id is distinct from t.campaign_id::text
                   or exists (select 1 from point_transactions p where p.id = t.parent_id
                               and (p.user_id <> t.user_id or p.transaction_type <> 'earn')))
            order by t.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?
    {
        out.push(Violation {
            user_id: Some(r.user_id),
            invariant: "a bonus line is an earn of its campaign, on its member's own earn",
            details: format!("transaction {}", r.id),
        });
    }
    Ok(out)
}
