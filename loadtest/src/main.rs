//! `loadtest`: parse the command line, run the scenario, print and write the summary, and
//! exit non-zero when a threshold is broken.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loadtest::{Cli, run};
use simplelog::{LevelFilter, SimpleLogger};

/// Every threshold held.
const PASSED: u8 = 0;
/// The run finished and broke a threshold.
const BROKEN: u8 = 1;
/// The command line was wrong (clap uses 2 as well).
const USAGE: u8 = 2;
/// The load test could not run.
const FAILED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Goose logs each failed request at warn level, thousands of lines that would bury the
    // summary. Installed before goose's, this logger wins (goose's own init then fails softly).
    let level = if cli.verbose {
        LevelFilter::Info
    } else {
        LevelFilter::Error
    };
    let _ = SimpleLogger::init(level, simplelog::Config::default());
    let summary_file = cli.out_dir.join("summary.json");
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}\n\nFor more information, try '--help'.");
            return ExitCode::from(USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(FAILED);
        }
    };
    let summary = match runtime.block_on(run(&config)) {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(FAILED);
        }
    };
    let verdict = summary.verdict(&config.thresholds);
    print!("{summary}");
    for report in &config.reports {
        println!("  report       {}", report.display());
    }
    if let Err(err) = write_summary(&summary_file, &summary, &verdict) {
        eprintln!("error: {err:#}");
        return ExitCode::from(FAILED);
    }
    println!("  summary      {}", summary_file.display());
    print!("{verdict}");
    ExitCode::from(if verdict.passed() { PASSED } else { BROKEN })
}

fn write_summary(
    path: &Path,
    summary: &loadtest::Summary,
    verdict: &loadtest::Verdict,
) -> anyhow::Result<()> {
    let mut json = serde_json::to_value(summary).context("cannot encode the summary")?;
    json["passed"] = verdict.passed().into();
    json["violations"] = verdict
        .violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .into();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&json).context("cannot encode the summary")?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
