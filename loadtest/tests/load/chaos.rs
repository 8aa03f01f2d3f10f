//! `chaos` in process: one replica taken out of the sticky proxy for a second and put back, as
//! the gateway's active checks do with a paused replica. The record of the pause is written
//! while the load runs, as `scripts/chaos.sh` does, and read by the runner when it ends.

use std::path::Path;
use std::time::{Duration, SystemTime};

use loadtest::{Scenario, Summary, Verdict, Violation, run};

use crate::proxy::Route;
use crate::scenarios::every_user_warm;
use crate::stack::{COST, Stack, exclusive, scratch};

const USERS: usize = 20;

/// How the replica comes back after its second away.
enum Back {
    /// As it left, cache and all (`docker unpause`).
    Resumed,
    /// A new process under the same name, with an empty cache.
    Restarted,
}

fn write_record(path: &Path, replica: &str, paused_at: SystemTime, resumed_at: SystemTime) {
    let json = serde_json::json!({
        "replica": replica,
        "paused_at": humantime::format_rfc3339_millis(paused_at).to_string(),
        "resumed_at": humantime::format_rfc3339_millis(resumed_at).to_string(),
    });
    std::fs::write(path, json.to_string()).unwrap();
}

/// Runs `chaos` with 20 users for 4 s on 4 replicas; `svc-0` is out for 1 s once every user
/// is warm, then back as `back` says.
async fn chaos(back: Back) -> (Summary, Verdict) {
    let mut stack = Stack::start(4, COST, Route::Sticky).await;
    let record = scratch(match back {
        Back::Resumed => "chaos-resumed",
        Back::Restarted => "chaos-restarted",
    })
    .join("record.json");
    let mut config = stack.config(Scenario::Chaos, USERS, 4);
    config.chaos_record = Some(record.clone());
    // The proxy takes the replica back at once: no health check to wait for.
    config.chaos_settle = Duration::ZERO;
    let load = tokio::spawn(async move {
        let summary = run(&config).await.unwrap();
        let verdict = summary.verdict(&config.thresholds);
        (summary, verdict)
    });
    every_user_warm(&stack.proxy, USERS).await;
    let paused_at = SystemTime::now();
    stack.proxy.set_upstreams(stack.upstreams[1..].to_vec());
    // The pause itself, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(1)).await;
    match back {
        Back::Resumed => stack.proxy.set_upstreams(stack.upstreams.clone()),
        Back::Restarted => stack.restart(0, COST).await,
    }
    write_record(&record, "svc-0", paused_at, SystemTime::now());
    let (summary, verdict) = load.await.unwrap();
    eprint!("{summary}{verdict}");
    (summary, verdict)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_out_and_back_passes_and_its_users_come_home_warm() {
    let _guard = exclusive().await;
    let (summary, verdict) = chaos(Back::Resumed).await;

    assert!(verdict.passed(), "{summary}{verdict}");
    let chaos = summary.chaos.as_ref().unwrap();
    let its = chaos.its_users;
    assert_eq!(its.users, summary.users_per_host["svc-0"], "{summary}");
    assert!(its.users > 0, "{summary}");
    assert_eq!(its.users + chaos.other_users.users, USERS);
    // Every one of them went elsewhere while it was out, and nobody else moved.
    assert_eq!(its.moved, its.users, "{summary}");
    assert_eq!(chaos.other_users.moved, 0, "{summary}");
    assert!(its.after_calls > 0 && its.after_astray == 0, "{summary}");
    assert_eq!(summary.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_back_with_an_empty_cache_fails_the_way_home() {
    let _guard = exclusive().await;
    let (summary, verdict) = chaos(Back::Restarted).await;

    let its_users = summary.chaos.as_ref().unwrap().its_users.users;
    assert!(
        verdict.violations.iter().any(|v| matches!(
            v,
            Violation::ChaosNotHome { its_users: n, .. } if *n == its_users
        )),
        "{summary}{verdict}"
    );
}
