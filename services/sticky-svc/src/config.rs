//! The command line: every flag has an environment twin, for containers and Kubernetes.
//!
//! Parsing only: it may not start anything.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::limits::Limits;
use crate::serve::MIN_HEADER_BYTES;

/// sticky-svc: the first call per user is expensive, later calls hit a cache.
#[derive(Debug, Parser)]
#[command(name = "sticky-svc", version, about, long_about = None)]
pub struct Cli {
    /// Address to listen on (`healthcheck` probes the same port)
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080", global = true)]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags of the server itself.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Delay of each user's first call (humantime: 5s, 250ms, 0s)
    #[arg(long, env = "FIRST_CALL_COST", default_value = "5s", value_parser = duration)]
    pub first_call_cost: Duration,

    /// Name reported in bodies and `x-served-by` [default: the machine's host name]
    #[arg(long, env = "POD_NAME")]
    pub host_name: Option<String>,

    /// Most users cached; beyond it the user whose first call completed earliest is evicted
    /// (first calls in progress are not counted: see --max-first-calls)
    #[arg(long, env = "CACHE_CAPACITY", default_value = "100000")]
    pub cache_capacity: NonZeroUsize,

    /// Most first calls in progress at once; past it a new user's first call gets 503 at once
    /// (cached users, and users whose first call is in progress, are not affected)
    #[arg(long, env = "MAX_FIRST_CALLS", default_value = "10000")]
    pub max_first_calls: NonZeroUsize,

    /// A first call nobody has waited for during this long is cancelled (a caller who comes
    /// back sooner joins it)
    #[arg(long, env = "ABANDON_GRACE", default_value = "2s", value_parser = duration)]
    pub abandon_grace: Duration,

    /// Most connections served at once; past it a connection is answered 503 and closed
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: NonZeroUsize,

    /// Longest wait for in-flight calls after SIGTERM/SIGINT
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
    pub shutdown_grace: Duration,

    /// Request line plus headers above this size are refused with 431 (8192 at least)
    #[arg(long, env = "MAX_HEADER_BYTES", default_value = "16384", value_parser = header_bytes)]
    pub max_header_bytes: usize,

    /// Time a connection may go with no request in flight (a slow request head, an idle
    /// keep-alive connection) before it is closed; a request in flight is never cut
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub header_read_timeout: Duration,

    /// Serve HTTPS (ALPN h2 and http/1.1) with this PEM certificate chain, the server's
    /// certificate first; needs --tls-key
    #[arg(long, env = "TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, SEC1 or PKCS#1)
    #[arg(long, env = "TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// A TLS handshake not finished within this is dropped
    #[arg(long, env = "TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub tls_handshake_timeout: Duration,

    /// Tokio worker threads; 1 runs a single-threaded runtime [default: number of CPUs]
    #[arg(long, env = "WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// Log output: human-readable lines (`text`, alias `human`) or one JSON object per line
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `sticky_svc=debug`
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

impl ServeArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_first_calls: self.max_first_calls,
            abandon_grace: self.abandon_grace,
        }
    }

    /// The certificate and key files when HTTPS is asked for; both flags or neither.
    pub fn tls_files(&self) -> Result<Option<(&Path, &Path)>, FlagError> {
        const CERT: &str = "--tls-cert (TLS_CERT)";
        const KEY: &str = "--tls-key (TLS_KEY)";
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(FlagError::TlsHalf {
                given: CERT,
                missing: KEY,
            }),
            (None, Some(_)) => Err(FlagError::TlsHalf {
                given: KEY,
                missing: CERT,
            }),
        }
    }
}

/// Subcommands; without one, the server runs.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// GET this server's /healthz on loopback; exit 0 when it answers 200, 1 otherwise
    Healthcheck(HealthcheckArgs),
}

/// Flags of `healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Give up after this long
    #[arg(long, env = "HEALTHCHECK_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub timeout: Duration,
}

/// How log lines are written: the same `LOG_FORMAT` words as the gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (`human`, this flag's former name, still accepted).
    #[value(alias = "human")]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why a flag's value is refused (clap prints it after the flag's name), or flags that do not
/// go together.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// Not a duration humantime reads.
    #[error("{0} (write it like 5s, 250ms, 1m 30s)")]
    Duration(#[from] humantime::DurationError),
    /// Not a number.
    #[error("{0}: expected a number of bytes")]
    Number(#[from] std::num::ParseIntError),
    /// Below hyper's smallest read buffer.
    #[error("must be at least {MIN_HEADER_BYTES} (hyper's minimum)")]
    TooSmall,
    /// One of the TLS pair without the other.
    #[error("{given} is set but {missing} is not: HTTPS needs both, plain HTTP neither")]
    TlsHalf {
        given: &'static str,
        missing: &'static str,
    },
}

fn duration(text: &str) -> Result<Duration, FlagError> {
    Ok(humantime::parse_duration(text)?)
}

fn header_bytes(text: &str) -> Result<usize, FlagError> {
    let bytes: usize = text.parse()?;
    if bytes < MIN_HEADER_BYTES {
        return Err(FlagError::TooSmall);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_article() {
        let cli = Cli::try_parse_from(["sticky-svc"]).unwrap();
        assert_eq!(cli.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(cli.serve.first_call_cost, Duration::from_secs(5));
        assert_eq!(cli.serve.cache_capacity.get(), 100_000);
        assert_eq!(cli.serve.shutdown_grace, Duration::from_secs(10));
        assert!(cli.command.is_none());
    }

    #[test]
    fn limit_defaults_are_the_librarys() {
        let cli = Cli::try_parse_from(["sticky-svc"]).unwrap();
        assert_eq!(cli.serve.limits(), Limits::default());
        let cli = Cli::try_parse_from([
            "sticky-svc",
            "--max-first-calls",
            "3",
            "--abandon-grace",
            "250ms",
            "--max-connections",
            "7",
        ])
        .unwrap();
        let limits = cli.serve.limits();
        assert_eq!(limits.max_first_calls.get(), 3);
        assert_eq!(limits.abandon_grace, Duration::from_millis(250));
        assert_eq!(limits.max_connections.get(), 7);
        for bad in [
            ["--max-first-calls", "0"],
            ["--max-connections", "0"],
            ["--abandon-grace", "2"],
        ] {
            assert!(
                Cli::try_parse_from(["sticky-svc", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let cli = Cli::try_parse_from([
            "sticky-svc",
            "--first-call-cost",
            "0s",
            "--workers",
            "1",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.serve.first_call_cost, Duration::ZERO);
        assert_eq!(cli.serve.workers.map(NonZeroUsize::get), Some(1));
        assert_eq!(cli.serve.log_format, LogFormat::Json);
        for bad in [
            ["--first-call-cost", "5"],
            ["--cache-capacity", "0"],
            ["--max-header-bytes", "100"],
            ["--listen", "localhost:80"],
        ] {
            assert!(
                Cli::try_parse_from(["sticky-svc", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn log_format_takes_the_gateways_words_and_the_old_one() {
        let parse = |word: &str| {
            Cli::try_parse_from(["sticky-svc", "--log-format", word])
                .map(|cli| cli.serve.log_format)
        };
        assert_eq!(parse("text").unwrap(), LogFormat::Text);
        assert_eq!(parse("human").unwrap(), LogFormat::Text);
        assert_eq!(parse("json").unwrap(), LogFormat::Json);
        assert!(parse("pretty").is_err());
        // Read from the definition, not a parse: a LOG_FORMAT in the test's environment would win.
        let command = Cli::command();
        let flag = command
            .get_arguments()
            .find(|arg| arg.get_id() == "log_format");
        assert_eq!(flag.unwrap().get_default_values(), ["text"]);
    }

    #[test]
    fn tls_needs_both_files_or_neither() {
        let parse = |flags: &[&str]| {
            let cli = Cli::try_parse_from(["sticky-svc"].iter().chain(flags)).unwrap();
            cli.serve
        };
        let plain = parse(&[]);
        assert!(plain.tls_files().unwrap().is_none());
        assert_eq!(plain.tls_handshake_timeout, Duration::from_secs(10));
        let both = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        let (cert, key) = both.tls_files().unwrap().unwrap();
        assert_eq!((cert, key), (Path::new("c.pem"), Path::new("k.pem")));
        for (flag, missing) in [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")] {
            let half = parse(&[flag, "x.pem"]);
            let err = half.tls_files().unwrap_err();
            assert!(matches!(err, FlagError::TlsHalf { .. }));
            assert!(err.to_string().starts_with(flag), "{err}");
            assert!(err.to_string().contains(missing), "{err}");
        }
        let fast = parse(&["--tls-handshake-timeout", "200ms"]);
        assert_eq!(fast.tls_handshake_timeout, Duration::from_millis(200));
    }

    #[test]
    fn healthcheck_takes_the_listen_port() {
        let cli = Cli::try_parse_from(["sticky-svc", "healthcheck", "--listen", "[::]:9000"]);
        let cli = cli.unwrap();
        assert_eq!(cli.listen.port(), 9000);
        assert!(matches!(cli.command, Some(Command::Healthcheck(_))));
    }
}
