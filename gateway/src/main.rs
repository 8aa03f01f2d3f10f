//! The `gateway` command line: parse arguments, set up logging, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gateway::config::{self, Diagnostic, LoadOptions, Severity};

/// An L7 gateway that reads Istio YAML and routes by Maglev consistent hashing.
#[derive(Parser)]
#[command(name = "gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and analyse Istio YAML (files or directories); exit 1 on any error.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// YAML files or directories (read recursively: *.yaml, *.yml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Namespace of documents without metadata.namespace.
    #[arg(long, env = "GATEWAY_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Cluster domain that qualifies short host names.
    #[arg(long, env = "GATEWAY_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One line per finding, then a summary.
    Text,
    /// One JSON object: findings and counts.
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let options = LoadOptions {
        namespace: args.namespace.clone(),
        cluster_domain: args.cluster_domain.clone(),
    };
    let loaded = config::load_paths(&args.paths, &options).context("loading configuration")?;
    let mut findings = loaded.diagnostics;
    findings.extend(config::check(&loaded.config));
    findings.sort_by(|a, b| {
        a.location
            .cmp(&b.location)
            .then(b.severity.cmp(&a.severity))
    });
    let count = |s: Severity| findings.iter().filter(|d| d.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let c = &loaded.config;
    let resources = c.gateways.len()
        + c.virtual_services.len()
        + c.destination_rules.len()
        + c.service_entries.len();
    match args.format {
        Format::Text => {
            for d in &findings {
                println!("{d}");
            }
            println!(
                "{} error{}, {} warning{}; {resources} valid Istio resource{} read",
                errors,
                plural(errors),
                warnings,
                plural(warnings),
                plural(resources)
            );
        }
        Format::Json => {
            let report = serde_json::json!({
                "errors": errors,
                "warnings": warnings,
                "resources": resources,
                "findings": findings.iter().collect::<Vec<&Diagnostic>>(),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
