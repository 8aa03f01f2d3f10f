//! When to reload the config: file changes, SIGHUP, and a slow poll as a safety net.
//!
//! Kubernetes updates a ConfigMap volume by writing a new `..<timestamp>` folder and swapping
//! the `..data` symlink, so the files the gateway reads change without any write event on them.
//! The watch is therefore on the folders (the config folder itself, or a file's parent), and a
//! content [`fingerprint`] decides whether anything really changed. inotify is not available
//! everywhere (some bind mounts, network file systems), hence the poll every `poll` interval.
//!
//! An editor that truncates a file and writes it in several steps can leave, at the end of a
//! burst's settle, a shorter file that still parses (a `---` between documents cut off). So a
//! change is acted on only when two reads a settle apart agree ([`Changes`]), and the config is
//! then loaded from that very read ([`ConfigFiles`]), not from a third one.
//!
//! This module says when to look again and hands over what it read; loading, validating and
//! swapping is the caller's job, so a bad new config never replaces a good running one. It walks
//! the config folders with the loader's walk, so it looks at exactly the files a load reads.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{self, LoadError, LoadOptions, Loaded};

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A watched folder changed, or the poll came round.
    Files,
    /// SIGHUP: reload even if the files look the same.
    Signal,
}

/// What can go wrong when setting up the watch.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file watcher could not be created or attached.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// The folder.
        path: PathBuf,
        /// notify's error.
        source: notify::Error,
    },
    /// SIGHUP could not be hooked.
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(std::io::Error),
}

/// Keeps the watch alive; drop it to stop watching.
pub struct Triggers {
    rx: mpsc::Receiver<Trigger>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Triggers {
    /// Waits for the next trigger, then lets a burst of events settle for `debounce` and folds
    /// them into one (a SIGHUP in the burst wins).
    pub async fn next(&mut self, debounce: Duration) -> Option<Trigger> {
        let mut trigger = self.rx.recv().await?;
        tokio::time::sleep(debounce).await;
        while let Ok(more) = self.rx.try_recv() {
            if more == Trigger::Signal {
                trigger = Trigger::Signal;
            }
        }
        Some(trigger)
    }
}

/// Starts watching `paths` (files or folders), SIGHUP, and a poll every `poll`.
pub fn watch(paths: &[PathBuf], poll: Duration) -> Result<Triggers, ReloadError> {
    let (tx, rx) = mpsc::channel(16);

    let files_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a trigger: dropping this one loses nothing.
            let _ = files_tx.try_send(Trigger::Files);
        }
    })
    .map_err(|source| ReloadError::Watch {
        path: PathBuf::new(),
        source,
    })?;
    for path in paths {
        let folder = watched_folder(path);
        watcher
            .watch(&folder, RecursiveMode::Recursive)
            .map_err(|source| ReloadError::Watch {
                path: folder.clone(),
                source,
            })?;
    }

    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).map_err(ReloadError::Signal)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if tx.send(Trigger::Signal).await.is_err() {
                    return;
                }
            }
        });
    }

    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; the config was just loaded
        loop {
            tick.tick().await;
            if tx.send(Trigger::Files).await.is_err() {
                return;
            }
        }
    });

    Ok(Triggers {
        rx,
        _watcher: Some(watcher),
    })
}

/// The config changes to act on: each trigger, settled, whose files two reads a settle apart
/// agree on and differ from the last ones acted on (a SIGHUP acts on unchanged files too).
pub struct Changes {
    triggers: Triggers,
    paths: Arc<[PathBuf]>,
    settle: Duration,
    /// Fingerprint of the files last acted on (or loaded at start).
    last: u64,
}

impl Changes {
    /// Changes of `paths` as `triggers` signal them; `loaded` is the fingerprint of the files
    /// the running config was read from.
    pub fn new(triggers: Triggers, paths: &[PathBuf], loaded: u64, settle: Duration) -> Self {
        Self {
            triggers,
            paths: paths.into(),
            settle,
            last: loaded,
        }
    }

    /// Waits for the next change and returns why, and the files as both reads saw them.
    /// Files still changing between the two reads are left for the next trigger (the writes'
    /// own events, or the poll).
    pub async fn next(&mut self) -> Option<(Trigger, ConfigFiles)> {
        loop {
            let trigger = self.triggers.next(self.settle).await?;
            let first = ConfigFiles::read_blocking(self.paths.clone()).await;
            if trigger == Trigger::Files && first.fingerprint == self.last {
                continue;
            }
            tokio::time::sleep(self.settle).await;
            let second = ConfigFiles::read_blocking(self.paths.clone()).await;
            if !second.same_as(&first) {
                tracing::info!("configuration files still being written; waiting for them");
                continue;
            }
            // Recorded even when the new files are rejected: they are not retried until they
            // change again (or SIGHUP), so one bad edit logs one error.
            self.last = second.fingerprint;
            return Some((trigger, second));
        }
    }
}

/// The YAML files a load reads ([`config::config_files`]), as one pass read them: what a
/// config is loaded from, and what tells two passes apart.
#[derive(Debug)]
pub struct ConfigFiles {
    /// Each file and its text; the first walk or read error ends the pass.
    files: Result<Vec<(PathBuf, String)>, LoadError>,
    fingerprint: u64,
}

impl ConfigFiles {
    /// Reads the files under `paths` (blocking I/O).
    pub fn read(paths: &[PathBuf]) -> Self {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        let files = config::config_files(paths).and_then(|files| {
            files
                .into_iter()
                .map(|file| {
                    hasher.write(file.as_os_str().as_encoded_bytes());
                    let text = std::fs::read_to_string(&file);
                    match &text {
                        Ok(text) => hasher.write(text.as_bytes()),
                        Err(e) => hasher.write(e.to_string().as_bytes()),
                    }
                    let text = text.map_err(|source| LoadError::Read {
                        path: file.clone(),
                        source,
                    })?;
                    Ok((file, text))
                })
                .collect()
        });
        if let Err(e) = &files {
            hasher.write(e.to_string().as_bytes());
        }
        Self {
            files,
            fingerprint: hasher.finish(),
        }
    }

    /// [`ConfigFiles::read`] on a blocking thread, off the event loop.
    pub async fn read_blocking(paths: Arc<[PathBuf]>) -> Self {
        match tokio::task::spawn_blocking(move || Self::read(&paths)).await {
            Ok(files) => files,
            // A blocking task is never cancelled while the runtime runs: this is a panic.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// A hash of the files' names and texts (and of a read's error).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether both passes read the same files with the same texts.
    pub fn same_as(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && match (&self.files, &other.files) {
                (Ok(a), Ok(b)) => a == b,
                (Err(a), Err(b)) => a.to_string() == b.to_string(),
                _ => false,
            }
    }

    /// Loads the config from these texts, as [`config::load_paths`] would from the files.
    pub fn load(self, options: &LoadOptions) -> Result<Loaded, LoadError> {
        let mut loaded = Loaded::default();
        for (file, text) in self.files? {
            let before = loaded.diagnostics.len();
            config::load_source(&file, &text, options, &mut loaded);
            let findings = loaded.diagnostics.len() - before;
            tracing::debug!(file = %file.display(), findings, "configuration file read");
        }
        Ok(loaded)
    }
}

fn watched_folder(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A hash of the YAML the gateway would read from `paths` ([`config::config_files`], the
/// loader's own walk): names and contents of the files, following symlinks. Hidden entries
/// (`..data`) are skipped as the loader skips them. A walk or read that fails hashes its error,
/// so a file that appears, vanishes or turns unreadable changes the fingerprint.
pub fn fingerprint(paths: &[PathBuf]) -> u64 {
    ConfigFiles::read(paths).fingerprint
}

#[cfg(test)]
mod tests;
