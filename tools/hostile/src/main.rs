//! The `hostile` command line: parse the plan, make room for its sockets, run it on one thread
//! (a hostile client should not take CPU from the server it measures), print its lines.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hostile::{Phase, Plan, rlimit};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let cli = hostile::plan::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostile: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: hostile::plan::Cli) -> anyhow::Result<()> {
    let plan = Plan::try_from(cli)?;
    rlimit::fit(plan.connections)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let stop = interrupted()?;
        let report = hostile::run(&plan, stop, |phase, report| {
            let word = match phase {
                Phase::Progress => "progress",
                Phase::Ready => "ready",
            };
            println!("hostile: {word} {report}");
        })
        .await;
        println!("hostile: done {report}");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM: the hold ends early and the report is printed as usual.
fn interrupted() -> anyhow::Result<impl Future<Output = ()>> {
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
