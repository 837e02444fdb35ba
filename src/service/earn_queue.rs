//! Group commit of a hot member's earns on this instance. While one earn of a member runs
//! under the member's lock, the earns that arrive for the same member wait here instead of
//! each waiting for the lock; the next to take the lock runs all of them in one statement
//! and one transaction (`earn_points_many`, migration 0028): one WAL flush and one round
//! trip for the batch, where the member's turn is what limits a hot member's earns.
//!
//! Earns of different members can keep company the same way (`EARN_GROUP_RUNNERS`, off by
//! default: it spends half the CPU per earn but, on a PostgreSQL that is not CPU-bound,
//! makes earns wait; docs/benchmarks.md): at most that many earns (the runners) run at
//! once on an instance; one that arrives while they all run waits, and the next runner to
//! finish takes every earn waiting and runs them in one statement, each member's lock
//! held. A lone earn at a quiet time runs at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use super::points::EarnRequest;
use crate::domain::Outcome;
use crate::error::Result;

/// What a queued earn gets back: its answer, or `None` when it was not run and its caller
/// runs it alone.
pub type Answer = Option<Result<Outcome>>;

/// An earn waiting for its member's turn.
pub struct Waiting {
    id: u64,
    pub req: EarnRequest,
    pub key_hash: Option<String>,
    pub answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Member {
    /// an earn of this member is running (or the queue is being run)
    running: bool,
    waiting: Vec<Waiting>,
}

/// Earns of any members waiting for a runner, and how many runners there are.
#[derive(Default)]
struct Company {
    running: usize,
    waiting: Vec<Waiting>,
}

#[derive(Default)]
pub struct EarnQueue {
    members: Mutex<HashMap<i64, Member>>,
    company: Mutex<Company>,
    next_id: AtomicU64,
}

/// Up to `max` of `waiting`, oldest first, taken out.
fn take_oldest(waiting: &mut Vec<Waiting>, max: usize) -> Vec<Waiting> {
    let n = waiting.len().min(max);
    waiting.drain(..n).collect()
}

/// Takes the earn `id` out of `waiting`; false when it is not there (already taken).
fn remove(waiting: &mut Vec<Waiting>, id: u64) -> bool {
    let before = waiting.len();
    waiting.retain(|w| w.id != id);
    waiting.len() < before
}

/// The caller's part: run its earn now, or wait for the answer under this id.
pub enum Turn {
    Run,
    Queued(u64, oneshot::Receiver<Answer>),
}

impl EarnQueue {
    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Member>> {
        // a panic elsewhere while holding it leaves plain data behind; keep going with it
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn company(&self) -> std::sync::MutexGuard<'_, Company> {
        self.company.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiting(&self, req: &EarnRequest, key_hash: Option<&str>) -> (Waiting, Turn) {
        let (answer, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let w = Waiting {
            id,
            req: req.clone(),
            key_hash: key_hash.map(str::to_owned),
            answer,
        };
        (w, Turn::Queued(id, rx))
    }

    /// The caller (its member's turn already had) becomes a runner and runs its earn now if
    /// fewer than `runners` run; otherwise it waits for one to take it, with the others
    /// waiting, into one statement.
    pub fn keep_company(&self, runners: usize, req: &EarnRequest, key_hash: Option<&str>) -> Turn {
        let mut company = self.company();
        if company.running < runners {
            company.running += 1;
            return Turn::Run;
        }
        let (w, turn) = self.waiting(req, key_hash);
        company.waiting.push(w);
        turn
    }

    /// Up to `max` earns waiting for a runner, oldest first.
    pub fn take_company(&self, max: usize) -> Vec<Waiting> {
        take_oldest(&mut self.company().waiting, max)
    }

    /// Takes an earn back from waiting for a runner; false when a runner took it already,
    /// and its answer will come.
    pub fn withdraw_company(&self, id: u64) -> bool {
        remove(&mut self.company().waiting, id)
    }

    /// Called by a runner that has finished: true when nothing waits (it stops being a
    /// runner), false when it is to take what waits.
    pub fn runner_done(&self) -> bool {
        let mut company = self.company();
        if company.waiting.is_empty() {
            company.running = company.running.saturating_sub(1);
            true
        } else {
            false
        }
    }

    /// A runner stopped without finishing (a panic): it stops being a runner, and if no
    /// runner is left, what waits is answered `None` to run alone.
    pub fn runner_lost(&self) {
        let orphans = {
            let mut company = self.company();
            company.running = company.running.saturating_sub(1);
            if company.running > 0 {
                return;
            }
            std::mem::take(&mut company.waiting)
        };
        for w in orphans {
            let _ = w.answer.send(None);
        }
    }

    /// The caller runs its earn now if no earn of this member is running on this instance;
    /// otherwise it is queued behind the one that is.
    pub fn join(&self, req: &EarnRequest, key_hash: Option<&str>) -> Turn {
        let mut members = self.members();
        let member = members.entry(req.user_id).or_default();
        if !member.running {
            member.running = true;
            return Turn::Run;
        }
        let (w, turn) = self.waiting(req, key_hash);
        member.waiting.push(w);
        turn
    }

    /// Up to `max` of the member's queued earns, oldest first.
    pub fn take(&self, user_id: i64, max: usize) -> Vec<Waiting> {
        let mut members = self.members();
        let Some(member) = members.get_mut(&user_id) else {
            return Vec::new();
        };
        take_oldest(&mut member.waiting, max)
    }

    /// Takes a queued earn back (its caller stopped waiting); false when it was already
    /// taken to be run, and its answer will come.
    pub fn withdraw(&self, user_id: i64, id: u64) -> bool {
        let mut members = self.members();
        let Some(member) = members.get_mut(&user_id) else {
            return false;
        };
        remove(&mut member.waiting, id)
    }

    /// Gives up the member's queue (its runner stopped without finishing): every queued earn
    /// is answered `None`, so that its caller runs it alone, and the member is free again.
    pub fn abandon(&self, user_id: i64) {
        let member = self.members().remove(&user_id);
        for w in member.map(|m| m.waiting).unwrap_or_default() {
            let _ = w.answer.send(None);
        }
    }

    /// Called by whoever ran the member's earns when it has finished: true when nothing is
    /// queued (the member is free again), false when the queue is still to be run.
    pub fn finish(&self, user_id: i64) -> bool {
        let mut members = self.members();
        match members.get(&user_id) {
            Some(member) if !member.waiting.is_empty() => false,
            _ => {
                members.remove(&user_id);
                true
            }
        }
    }
}
