//! Model-based property test: random sequences of earn, use, adjust, reverse, refund,
//! expiry sweeps and clock jumps, checked after every step against a plain in-memory
//! model of batches and balances, and against `verify_ledger`.
//! Cases: 256 by default; set MODEL_CASES for more.

use std::collections::HashSet;

use member_portal::clock::Clock;
use member_portal::domain::{Money, Reference};
use member_portal::error::Error;
use member_portal::service::ledger::verify_ledger;
use member_portal::service::points::{AdjustRequest, RefundRequest, ReverseRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use time::{Duration, OffsetDateTime};

use crate::harness::*;

const EXPIRY_DAYS: i64 = 60;
const DAILY_LIMIT: i64 = 5000;

#[derive(Debug, Clone)]
enum Op {
    Earn { base: i64, with_amount: bool },
    EarnReplay { pick: usize },
    Use { points: i64 },
    Adjust { points: i64 },
    Reverse { pick: usize, percent: Option<i64> },
    Refund { pick: usize },
    Sweep,
    Jump { hours: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..3000i64, any::<bool>()).prop_map(|(base, with_amount)| Op::Earn { base, with_amount }),
        1 => any::<usize>().prop_map(|pick| Op::EarnReplay { pick }),
        4 => (1..2500i64).prop_map(|points| Op::Use { points }),
        1 => prop_oneof![-1500..0i64, 1..1500i64].prop_map(|points| Op::Adjust { points }),
        2 => (any::<usize>(), proptest::option::of(1..=100i64))
            .prop_map(|(pick, percent)| Op::Reverse { pick, percent }),
        2 => any::<usize>().prop_map(|pick| Op::Refund { pick }),
        1 => Just(Op::Sweep),
        2 => (1..24 * 45i64).prop_map(|hours| Op::Jump { hours }),
    ]
}

#[derive(Debug, Clone)]
struct MBatch {
    expires: OffsetDateTime,
    avail: i64,
}

#[derive(Debug, Clone)]
struct MEarn {
    key: String,
    base: i64,
    points: i64,
    cents: Option<i64>,
    batch: usize,
    rev_points: i64,
    rev_cents: i64,
    fully_reversed: bool,
    /// points a reversal could not take back, settled by refunds into this earn's batch
    shortfall: i64,
}

#[derive(Debug, Clone)]
struct MUse {
    key: String,
    deductions: Vec<(usize, i64)>,
    refunded: bool,
}

#[derive(Debug, Clone, Default)]
struct Model {
    batches: Vec<MBatch>,
    earns: Vec<MEarn>,
    uses: Vec<MUse>,
    daily: (i64, i64),
    spent_cents: i64,
    reverse_keys: HashSet<String>,
}

type Step = Result<(), &'static str>;

impl Model {
    fn expire_due(&mut self, now: OffsetDateTime) {
        for b in &mut self.batches {
            if b.expires <= now {
                b.avail = 0;
            }
        }
    }

    fn live(&self, now: OffsetDateTime) -> i64 {
        self.batches
            .iter()
            .filter(|b| b.expires > now)
            .map(|b| b.avail)
            .sum()
    }

    /// First-expiring-first, after `first` (a reversal's own batch).
    fn consume(
        &mut self,
        mut points: i64,
        now: OffsetDateTime,
        first: Option<usize>,
    ) -> Vec<(usize, i64)> {
        let mut order: Vec<usize> = (0..self.batches.len())
            .filter(|&i| self.batches[i].avail > 0 && self.batches[i].expires > now)
            .collect();
        order.sort_by_key(|&i| (self.batches[i].expires, i));
        if let Some(f) = first.filter(|f| order.contains(f)) {
            order.retain(|&i| i != f);
            order.insert(0, f);
        }
        let mut taken = Vec::new();
        for i in order {
            if points == 0 {
                break;
            }
            let t = self.batches[i].avail.min(points);
            self.batches[i].avail -= t;
            points -= t;
            taken.push((i, t));
        }
        taken
    }

    fn earn(&mut self, key: String, base: i64, cents: Option<i64>, now: OffsetDateTime) -> Step {
        let day = (now.unix_timestamp() + 8 * 3600).div_euclid(86_400);
        let today = if self.daily.0 == day { self.daily.1 } else { 0 };
        if today + base > DAILY_LIMIT {
            return Err("DAILY_POINTS_LIMIT_EXCEEDED");
        }
        self.daily = (day, today + base);
        self.batches.push(MBatch {
            expires: now + Duration::days(EXPIRY_DAYS),
            avail: base,
        });
        self.earns.push(MEarn {
            key,
            base,
            points: base,
            cents,
            batch: self.batches.len() - 1,
            rev_points: 0,
            rev_cents: 0,
            fully_reversed: false,
            shortfall: 0,
        });
        self.spent_cents += cents.unwrap_or(0);
        Ok(())
    }

    fn debit(
        &mut self,
        points: i64,
        now: OffsetDateTime,
    ) -> Result<Vec<(usize, i64)>, &'static str> {
        if self.live(now) < points {
            return Err("INSUFFICIENT_POINTS");
        }
        Ok(self.consume(points, now, None))
    }

    /// Mirrors `reverse_tx`. Ok(true) when it was a replay (nothing written).
    fn reverse(
        &mut self,
        e: usize,
        sub: Option<&str>,
        cents: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<bool, &'static str> {
        let key = format!("{}#{}", self.earns[e].key, sub.unwrap_or(""));
        if self.reverse_keys.contains(&key) {
            return Ok(true);
        }
        let earn = self.earns[e].clone();
        let points_left = earn.points - earn.rev_points;
        let cents_left = earn.cents.map(|c| c - earn.rev_cents);
        let (take, returned) = match (sub, cents) {
            (None, _) | (Some(_), None) => (points_left, cents_left.filter(|c| *c > 0)),
            (Some(_), Some(a)) => {
                let (Some(order), Some(left)) = (earn.cents, cents_left) else {
                    return Err("VALIDATION_ERROR");
                };
                if a > left {
                    return Err("VALIDATION_ERROR");
                }
                // the share of everything returned so far, less what was taken before
                let share = if a == left {
                    points_left
                } else {
                    (earn.points * (earn.rev_cents + a) / order - earn.rev_points)
                        .clamp(0, points_left)
                };
                (share, Some(a))
            }
        };
        if take == 0 && returned.is_none() {
            return Err("VALIDATION_ERROR");
        }
        let recovered = take.min(self.live(now));
        self.consume(recovered, now, Some(earn.batch));
        let m = &mut self.earns[e];
        m.shortfall += take - recovered;
        m.rev_points += take;
        m.rev_cents += returned.unwrap_or(0);
        if sub.is_none() {
            m.fully_reversed = true;
        }
        self.spent_cents = (self.spent_cents - returned.unwrap_or(0)).max(0);
        self.reverse_keys.insert(key);
        Ok(false)
    }
}

fn code(r: &Result<member_portal::domain::Outcome, Error>) -> Result<bool, &'static str> {
    match r {
        Ok(o) => Ok(o.replayed),
        Err(e) => Err(e.code()),
    }
}

fn money(cents: i64) -> Money {
    Money::parse("amount", Decimal::new(cents, 2)).unwrap()
}

async fn run_case(h: &Harness, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let user = h.member().await;
    let mut model = Model::default();
    let mut n = 0;
    for op in ops {
        n += 1;
        let now = h.clock.now();
        // An operation expires what is due first, but only if it commits.
        let mut next = model.clone();
        next.expire_due(now);
        let (db, expected): (Result<bool, &'static str>, Result<bool, &'static str>) = match &op {
            Op::Earn { base, with_amount } => {
                let key = format!("{user}-E{n}");
                let cents = with_amount.then_some(base * 100);
                let mut req = earn_req(user, *base, &key, None);
                req.amount = cents.map(money);
                let db = code(&h.s.points.earn_points(req).await);
                (db, next.earn(key, *base, cents, now).map(|_| false))
            }
            Op::EarnReplay { pick } => {
                if model.earns.is_empty() {
                    continue;
                }
                let e = model.earns[pick % model.earns.len()].clone();
                let mut req = earn_req(user, e.base, &e.key, None);
                req.amount = e.cents.map(money);
                next = model.clone(); // a replay commits nothing
                (code(&h.s.points.earn_points(req).await), Ok(true))
            }
            Op::Use { points } => {
                let key = format!("{user}-U{n}");
                let db = code(&h.s.points.use_points(use_req(user, *points, &key)).await);
                let expected = next.debit(*points, now).map(|d| {
                    next.uses.push(MUse {
                        key,
                        deductions: d,
                        refunded: false,
                    });
                    false
                });
                (db, expected)
            }
            Op::Adjust { points } => {
                let req = AdjustRequest::parse(user, *points, "model", None).unwrap();
                let db =
                    h.s.points
                        .adjust_points(req)
                        .await
                        .map(|_| false)
                        .map_err(|e| e.code());
                let expected = if *points > 0 {
                    next.batches.push(MBatch {
                        expires: now + Duration::days(EXPIRY_DAYS),
                        avail: *points,
                    });
                    Ok(false)
                } else {
                    next.debit(-points, now).map(|_| false)
                };
                (db, expected)
            }
            Op::Reverse { pick, percent } => {
                if model.earns.is_empty() {
                    continue;
                }
                let e = pick % model.earns.len();
                let earn = model.earns[e].clone();
                let (sub, cents) = match percent {
                    None => (None, None),
                    Some(p) => (
                        Some(format!("R{n}")),
                        earn.cents.map(|c| (c * p / 100).max(1)),
                    ),
                };
                let req = ReverseRequest {
                    user_id: user,
                    source_type: Reference::parse("source_type", "order_complete").unwrap(),
                    source_id: Reference::parse("source_id", &earn.key).unwrap(),
                    refund_id: sub
                        .as_deref()
                        .map(|s| Reference::parse("refund_id", s).unwrap()),
                    amount: cents.map(money),
                };
                let db = code(&h.s.points.reverse_points(req).await);
                let expected = next.reverse(e, sub.as_deref(), cents, now);
                if expected == Ok(true) {
                    next = model.clone();
                }
                (db, expected)
            }
            Op::Refund { pick } => {
                if model.uses.is_empty() {
                    continue;
                }
                let u = pick % model.uses.len();
                let used = model.uses[u].clone();
                let req = RefundRequest {
                    user_id: user,
                    usage_type: Reference::parse("usage_type", "checkout").unwrap(),
                    reference_id: Reference::parse("reference_id", &used.key).unwrap(),
                };
                let db = code(&h.s.points.refund_points(req).await);
                let expected = if used.refunded {
                    next = model.clone();
                    Ok(true)
                } else {
                    for (b, p) in &used.deductions {
                        // a reversed earn's shortfall is settled before points come back
                        let settled = match next.earns.iter_mut().find(|e| e.batch == *b) {
                            Some(e) => {
                                let s = e.shortfall.min(*p);
                                e.shortfall -= s;
                                s
                            }
                            None => 0,
                        };
                        next.batches[*b].avail += p - settled;
                    }
                    next.uses[u].refunded = true;
                    Ok(false)
                };
                (db, expected)
            }
            Op::Sweep => {
                h.s.points
                    .expire_points()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                (Ok(false), Ok(false))
            }
            Op::Jump { hours } => {
                h.clock.advance(Duration::hours(*hours));
                continue;
            }
        };
        prop_assert_eq!(db, expected, "step {} {:?}", n, op);
        if expected.is_ok() {
            model = next;
        }
        let summary =
            h.s.points
                .summary(user)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            summary.available,
            model.live(now),
            "available after step {} {:?}",
            n,
            op
        );
        let mut conn = h.pool.acquire().await.unwrap();
        let batches: Vec<i64> = member_portal::db::points::all_batches(&mut conn, user)
            .await
            .unwrap()
            .iter()
            .map(|b| b.available_points)
            .collect();
        let modelled: Vec<i64> = model.batches.iter().map(|b| b.avail).collect();
        prop_assert_eq!(batches, modelled, "batches after step {} {:?}", n, op);
        let spent: Decimal =
            sqlx::query_scalar("select total_spent from member_profiles where user_id = $1")
                .bind(user)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        prop_assert_eq!(
            spent,
            Decimal::new(model.spent_cents, 2),
            "total_spent after step {} {:?}",
            n,
            op
        );
        let violations = verify_ledger(&h.pool, Some(user)).await.unwrap();
        prop_assert!(
            violations.is_empty(),
            "after step {} {:?}: {:?}",
            n,
            op,
            violations
        );
    }
    Ok(())
}

#[test]
fn ledger_matches_a_plain_model_under_random_operations() {
    let cases = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(Harness::with(Backend::Local, |c| {
        c.auto_upgrade = false;
        c.points_expiry_days = EXPIRY_DAYS;
        c.daily_points_limit = DAILY_LIMIT;
    }));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        rt.block_on(run_case(&h, ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("model: {cases} cases passed");
    drop(h);
}
