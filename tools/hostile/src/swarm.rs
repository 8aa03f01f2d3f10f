//! One run: open the plan's connections at its pace, each playing its mode on a task of its
//! own, hold them once the last is opened, then drop them all and report.
//!
//! The report is taken when the hold ends (or `stop` resolves), before the connections are
//! dropped: `open` is what the server still had open then, `server_closed` what it had closed.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::client;
use crate::pace::Pace;
use crate::plan::Plan;
use crate::tally::{Report, Tally};

/// How often a run looks whether every connection has settled.
const READY_POLL: Duration = Duration::from_millis(20);

/// Which report a run is handing out while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Every `plan.progress`.
    Progress,
    /// Once, when every connection is opened and done with its opening move.
    Ready,
}

/// Runs `plan` until its hold ends or `stop` resolves; `observe` sees the reports on the way.
pub async fn run(
    plan: &Plan,
    stop: impl Future<Output = ()>,
    mut observe: impl FnMut(Phase, &Report),
) -> Report {
    let tally = Arc::new(Tally::new());
    let report = |tally: &Tally| tally.report(plan.mode, plan.target, plan.connections);
    let total = plan.connections;
    let mut tasks = JoinSet::new();
    let mut pace = Pace::new(plan.rate);
    let mut next = 0;
    let mut hold_until = None;
    let mut progress = plan.progress.map(every);
    let mut ready_poll = every(READY_POLL);
    let mut ready = false;
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            () = sleep_until(hold_until), if hold_until.is_some() => break,
            taken = pace.tick(), if next < total => {
                for _ in 0..taken.min((total - next) as u64) {
                    let tally = Arc::clone(&tally);
                    tasks.spawn(client::play(plan.clone(), next, tally));
                    next += 1;
                }
                if next == total {
                    hold_until = Some(Instant::now() + plan.hold);
                }
            }
            _ = tick(&mut progress), if progress.is_some() => observe(Phase::Progress, &report(&tally)),
            _ = ready_poll.tick(), if !ready => {}
        }
        if !ready && next == total && tally.settled() == total as u64 {
            ready = true;
            observe(Phase::Ready, &report(&tally));
        }
    }
    let last = report(&tally);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    last
}

/// An interval whose first tick is one period from now, skipping ticks it was late for.
fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    interval
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => drop(interval.tick().await),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
