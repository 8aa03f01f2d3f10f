//! The plan of a run: what each connection does ([`Mode`]), where, how many, how fast and for
//! how long, from the command line ([`Cli`]) or built in code ([`Plan::new`]).
//!
//! Every count and duration is bounded, and the target must be this machine or a private
//! address (the project's own containers): a hostile client is never pointed at someone else.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use thiserror::Error;

/// The most connections one run may open.
pub const MAX_CONNECTIONS: usize = 100_000;

/// The `Content-Length` a stalled body announces unless told (`--content-length`).
pub const ANNOUNCED: usize = 1_000_000;

/// The body bytes a stalled body sends of what it announced.
pub const SENT: usize = 100;

/// The longest hold.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// What each connection does once open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Mode {
    /// One keep-alive HTTP/1.1 `GET /ping` (`x-user: hostile-<i>`), then idle.
    IdleH1,
    /// h2c with prior knowledge: one `GET /ping` stream, then idle.
    IdleH2,
    /// `POST /ping` announcing `--content-length` bytes (1 000 000 unless told), 100 of them
    /// sent, then nothing.
    StalledBody,
    /// Half a request head, then nothing.
    StalledHead,
    /// One `GET /ping` as soon as the connection opens; answered ones stay open, so the server's
    /// connection limit fills and the rest see 429 or a close.
    Flood,
}

impl Mode {
    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::IdleH1 => "idle-h1",
            Mode::IdleH2 => "idle-h2",
            Mode::StalledBody => "stalled-body",
            Mode::StalledHead => "stalled-head",
            Mode::Flood => "flood",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Play hostile clients against a server of ours (loopback or private addresses only).
///
/// Prints a `progress` line every `--progress`, a `ready` line once every connection has
/// played its part (answered, stalled, or failed), and a `done` line when the hold ends or on
/// SIGINT/SIGTERM: opened, still open, closed by the server (and when, since each connection
/// opened), answers by status. Exit 0 when it ran.
#[derive(Debug, Parser)]
#[command(name = "hostile", version)]
pub struct Cli {
    /// What each connection does.
    #[arg(value_enum)]
    pub mode: Mode,
    /// Server to play against (`ip:port`, loopback or private).
    #[arg(long)]
    pub target: SocketAddr,
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Connections opened per second at most.
    #[arg(long, default_value_t = NonZeroU32::new(2000).expect("non-zero"))]
    pub rate: NonZeroU32,
    /// How long to keep the connections once the last one is opened; then they are dropped.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Time between progress lines (`0s`: none).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub progress: Duration,
    /// The `Content-Length` a stalled body announces (more than the 100 bytes it sends). A
    /// proxy that buffers bodies up to a size (the gateway: `--retry-buffer-size`, 64 KiB) waits
    /// for a body below it itself; a larger one it may stream to the upstream, which may answer
    /// without reading it.
    #[arg(long, default_value_t = ANNOUNCED)]
    pub content_length: usize,
}

/// One run's plan, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What each connection does.
    pub mode: Mode,
    /// Where.
    pub target: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// Connections opened per second at most.
    pub rate: NonZeroU32,
    /// How long the connections are kept once the last one is opened.
    pub hold: Duration,
    /// Time between progress reports; `None`: none.
    pub progress: Option<Duration>,
    /// Longest wait for a TCP connection to be accepted.
    pub connect_timeout: Duration,
    /// The `Content-Length` a stalled body announces.
    pub content_length: usize,
}

/// Why a plan was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// The target is neither loopback nor private.
    #[error(
        "target {0}: hostile plays only against loopback or private addresses (this machine, the project's containers)"
    )]
    Target(SocketAddr),
    /// No connections, or too many.
    #[error("--connections {0}: must be 1 to {MAX_CONNECTIONS}")]
    Connections(usize),
    /// The hold is too long.
    #[error("--hold {0:?}: must be at most {MAX_HOLD:?}")]
    Hold(Duration),
    /// A stalled body must announce more than it sends.
    #[error("--content-length {0}: must be more than the {SENT} body bytes sent")]
    ContentLength(usize),
}

impl Plan {
    /// A plan of 100 connections at 2 000 per second held 10 s, or why `target` is refused.
    pub fn new(mode: Mode, target: SocketAddr) -> Result<Self, PlanError> {
        if !ours(target.ip()) {
            return Err(PlanError::Target(target));
        }
        Ok(Self {
            mode,
            target,
            connections: 100,
            rate: NonZeroU32::new(2000).expect("non-zero"),
            hold: Duration::from_secs(10),
            progress: None,
            connect_timeout: Duration::from_secs(5),
            content_length: ANNOUNCED,
        })
    }

    /// The same plan after its bounds are checked.
    pub fn checked(self) -> Result<Self, PlanError> {
        if !ours(self.target.ip()) {
            return Err(PlanError::Target(self.target));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(PlanError::Connections(self.connections));
        }
        if self.hold > MAX_HOLD {
            return Err(PlanError::Hold(self.hold));
        }
        if self.content_length <= SENT {
            return Err(PlanError::ContentLength(self.content_length));
        }
        Ok(self)
    }
}

impl TryFrom<Cli> for Plan {
    type Error = PlanError;

    fn try_from(cli: Cli) -> Result<Self, PlanError> {
        Plan {
            connections: cli.connections,
            rate: cli.rate,
            hold: cli.hold,
            progress: (!cli.progress.is_zero()).then_some(cli.progress),
            content_length: cli.content_length,
            ..Plan::new(cli.mode, cli.target)?
        }
        .checked()
    }
}

/// Loopback, RFC 1918 private, or IPv6 unique-local (fc00::/7): this machine or our containers.
fn ours(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Plan, PlanError> {
        let mut argv = vec!["hostile"];
        argv.extend_from_slice(args);
        Plan::try_from(Cli::try_parse_from(argv).expect("parses"))
    }

    #[test]
    fn the_command_line_makes_a_plan() {
        let plan = cli(&[
            "idle-h2",
            "--target",
            "127.0.0.1:8080",
            "--connections",
            "20",
            "--rate",
            "500",
            "--hold",
            "2s",
            "--progress",
            "0s",
        ])
        .unwrap();
        assert_eq!(plan.mode, Mode::IdleH2);
        assert_eq!(plan.connections, 20);
        assert_eq!(plan.rate.get(), 500);
        assert_eq!(plan.hold, Duration::from_secs(2));
        assert_eq!(plan.progress, None);
        assert_eq!(plan.content_length, 1_000_000);
    }

    #[test]
    fn only_our_own_addresses_are_targets() {
        for ok in [
            "127.0.0.1:1",
            "10.1.2.3:80",
            "172.18.0.5:8080",
            "192.168.1.1:80",
            "[::1]:80",
            "[fd00::1]:80",
        ] {
            assert!(cli(&["flood", "--target", ok]).is_ok(), "{ok}");
        }
        for refused in [
            "8.8.8.8:53",
            "172.32.0.1:80",
            "[2001:db8::1]:80",
            "0.0.0.0:80",
        ] {
            let target = refused.parse().unwrap();
            assert_eq!(
                cli(&["flood", "--target", refused]),
                Err(PlanError::Target(target))
            );
        }
    }

    #[test]
    fn counts_and_holds_are_bounded() {
        let target = ["--target", "127.0.0.1:80"];
        let with = |extra: &[&str]| cli(&[&["flood"][..], &target[..], extra].concat());
        assert_eq!(
            with(&["--connections", "0"]),
            Err(PlanError::Connections(0))
        );
        assert_eq!(
            with(&["--connections", "100001"]),
            Err(PlanError::Connections(100_001))
        );
        assert_eq!(
            with(&["--hold", "2h"]),
            Err(PlanError::Hold(Duration::from_secs(7200)))
        );
        assert_eq!(
            with(&["--content-length", "100"]),
            Err(PlanError::ContentLength(100))
        );
        assert_eq!(
            with(&["--content-length", "101"]).unwrap().content_length,
            101
        );
        assert!(
            Cli::try_parse_from([
                "hostile",
                "flood",
                "--target",
                "127.0.0.1:80",
                "--rate",
                "0"
            ])
            .is_err()
        );
    }
}
