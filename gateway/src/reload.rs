//! When to reload the config: file changes, SIGHUP, and a slow poll as a safety net.
//!
//! Kubernetes updates a ConfigMap volume by writing a new `..<timestamp>` folder and swapping
//! the `..data` symlink, so the files the gateway reads change without any write event on them.
//! The watch is therefore on the folders (the config folder itself, or a file's parent), and a
//! content [`fingerprint`] decides whether anything really changed. inotify is not available
//! everywhere (some bind mounts, network file systems), hence the poll every `poll` interval.
//!
//! This module only says "look again"; loading, validating and swapping is the caller's job, so
//! a bad new config never replaces a good running one. It walks the config folders with the
//! loader's walk, so it looks at exactly the files a load reads.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config;

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
    _watcher: notify::RecommendedWatcher,
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
        _watcher: watcher,
    })
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
    let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
    match config::config_files(paths) {
        Ok(files) => {
            for file in files {
                hasher.write(file.as_os_str().as_encoded_bytes());
                match std::fs::read(&file) {
                    Ok(bytes) => hasher.write(&bytes),
                    Err(e) => hasher.write(e.to_string().as_bytes()),
                }
            }
        }
        Err(e) => hasher.write(e.to_string().as_bytes()),
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out a folder the way kubelet mounts a ConfigMap.
    fn configmap(dir: &Path, version: &str, body: &str) {
        let data = dir.join(format!("..{version}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("istio.yaml"), body).unwrap();
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        let link = dir.join("istio.yaml");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("..data/istio.yaml", &link).unwrap();
        }
    }

    #[test]
    fn fingerprint_follows_a_configmap_symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        configmap(dir.path(), "v1", "a: 1\n");
        let paths = vec![dir.path().to_path_buf()];
        let v1 = fingerprint(&paths);
        assert_eq!(v1, fingerprint(&paths), "stable");
        configmap(dir.path(), "v2", "a: 2\n");
        assert_ne!(v1, fingerprint(&paths));
    }

    #[test]
    fn fingerprint_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x: 1\n").unwrap();
        let paths = vec![dir.path().to_path_buf()];
        let before = fingerprint(&paths);
        std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        assert_eq!(before, fingerprint(&paths));
        std::fs::write(dir.path().join("b.yml"), "y: 1\n").unwrap();
        assert_ne!(before, fingerprint(&paths));
    }

    #[tokio::test]
    async fn a_symlink_swap_triggers_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        configmap(dir.path(), "v1", "a: 1\n");
        let mut triggers = watch(&[dir.path().to_path_buf()], Duration::from_secs(3600)).unwrap();
        configmap(dir.path(), "v2", "a: 2\n");
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            triggers.next(Duration::from_millis(50)),
        )
        .await
        .expect("a trigger within 5 s");
        assert_eq!(got, Some(Trigger::Files));
    }

    #[tokio::test]
    async fn the_poll_triggers_without_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut triggers = watch(&[dir.path().to_path_buf()], Duration::from_millis(100)).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), triggers.next(Duration::ZERO)).await;
        assert_eq!(got.unwrap(), Some(Trigger::Files));
    }
}
