//! The open-files limit: a run of N connections needs N descriptors and a few more, where a
//! shell's soft limit is often 1 024. The soft limit is raised up to the hard one, never past it
//! (that takes privileges and is the operator's call).

use thiserror::Error;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors beyond the connections: stdio, the runtime's epoll and wake-up, a margin.
pub const SPARE: u64 = 64;

/// Why the limit could not be made to fit.
#[derive(Debug, Error)]
pub enum LimitError {
    /// The hard limit is below what the run needs.
    #[error(
        "{needed} open files needed ({connections} connections + {SPARE}), but the hard limit is {hard}: lower --connections or raise the hard limit (ulimit -Hn)"
    )]
    Hard {
        /// The connections planned.
        connections: usize,
        /// Descriptors needed.
        needed: u64,
        /// The hard limit.
        hard: u64,
    },
    /// setrlimit failed.
    #[error("raising the open-files soft limit to {0}: {1}")]
    Raise(u64, std::io::Error),
}

/// Makes room for `connections` open sockets; returns the soft limit now in force.
pub fn fit(connections: usize) -> Result<u64, LimitError> {
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (
        limit.current.unwrap_or(u64::MAX),
        limit.maximum.unwrap_or(u64::MAX),
    );
    match raise_to(connections, soft, hard)? {
        None => Ok(soft),
        Some(new) => {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(new),
                    maximum: limit.maximum,
                },
            )
            .map_err(|e| LimitError::Raise(new, e.into()))?;
            Ok(new)
        }
    }
}

/// The soft limit to set for `connections` (`None`: the current one is enough).
fn raise_to(connections: usize, soft: u64, hard: u64) -> Result<Option<u64>, LimitError> {
    let needed = connections as u64 + SPARE;
    if soft >= needed {
        Ok(None)
    } else if hard >= needed {
        Ok(Some(hard))
    } else {
        Err(LimitError::Hard {
            connections,
            needed,
            hard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_only_when_short() {
        assert_eq!(raise_to(100, 1024, 4096).unwrap(), None);
        assert_eq!(raise_to(5000, 1024, 20_000).unwrap(), Some(20_000));
        let err = raise_to(20_000, 1024, 20_000).unwrap_err();
        assert!(
            matches!(
                err,
                LimitError::Hard {
                    needed: 20_064,
                    hard: 20_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_small_run_fits() {
        assert!(fit(10).unwrap() >= 10 + SPARE);
    }
}
