//! The record of a pause, as `scripts/chaos.sh` writes it while the load runs.

use std::time::SystemTime;

use serde::Deserialize;
use thiserror::Error;

/// What `scripts/chaos.sh` did, as its JSON file says: the replica it paused, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The paused replica's name as `x-served-by` gives it (in compose, the container's host
    /// name, its short id).
    pub replica: String,
    /// Taken just before `docker pause`.
    pub paused_at: SystemTime,
    /// Taken just after `docker unpause` returned.
    pub resumed_at: SystemTime,
}

/// The file's shape; other fields (the container id, ...) are allowed and ignored.
#[derive(Deserialize)]
struct RecordFile {
    replica: String,
    paused_at: String,
    resumed_at: String,
}

/// Why a chaos record was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// Not the JSON object expected.
    #[error(
        "not the JSON expected ({0}); want {{\"replica\": NAME, \"paused_at\": TIME, \"resumed_at\": TIME}}"
    )]
    Json(String),
    /// A time that is not UTC RFC 3339.
    #[error("{field} {value:?} is not a UTC RFC 3339 time such as 2026-12-06T10:00:00.123Z")]
    Time {
        /// Which field.
        field: &'static str,
        /// What it said.
        value: String,
    },
    /// An empty replica name.
    #[error("the replica name is empty")]
    NoReplica,
    /// The resume is not after the pause.
    #[error("resumed_at is not after paused_at")]
    Order,
}

impl Record {
    /// Reads a record from its JSON text.
    pub fn parse(json: &str) -> Result<Self, RecordError> {
        let file: RecordFile =
            serde_json::from_str(json).map_err(|err| RecordError::Json(err.to_string()))?;
        let time = |field, value: String| {
            humantime::parse_rfc3339(&value).map_err(|_| RecordError::Time { field, value })
        };
        let record = Self {
            replica: file.replica.trim().to_owned(),
            paused_at: time("paused_at", file.paused_at)?,
            resumed_at: time("resumed_at", file.resumed_at)?,
        };
        if record.replica.is_empty() {
            return Err(RecordError::NoReplica);
        }
        if record.resumed_at <= record.paused_at {
            return Err(RecordError::Order);
        }
        Ok(record)
    }
}
