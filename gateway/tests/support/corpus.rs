//! Where the tests find Istio's own YAML corpus (68 files from istio/istio), which lives beside
//! the repository on the project's machines and nowhere in a clone of the repository alone.
//!
//! The one lookup rule, used by config_corpus.rs and config_fuzz.rs, and followed by
//! `scripts/istio-corpus.sh` for the line `just test` prints first (config_corpus.rs checks that
//! the two agree). `ISTIO_CORPUS`:
//!
//! - unset or empty: the first `shared/istio-corpus` folder above the gateway crate (`gateway/`,
//!   the repository, its parent, …); none found is no error;
//! - `require`: the same, but none found is an error (`.ci/run` sets it);
//! - `own`: no lookup; the corpus tests read the project's own Istio YAML (the GitHub workflow);
//! - `skip`: no lookup, and the corpus tests do nothing;
//! - anything else: the corpus folder, relative to the repository root; missing is an error.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// What `ISTIO_CORPUS` and the lookup give.
pub enum Lookup {
    /// Istio's corpus is in this folder.
    Found(PathBuf),
    /// No corpus above the checkout, and none required.
    Absent,
    /// `ISTIO_CORPUS=own`.
    Own,
    /// `ISTIO_CORPUS=skip`.
    Skip,
}

/// The gateway crate's folder, where the lookup starts.
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Applies the rule; panics when the corpus is required (`require`, or a path) and missing.
pub fn lookup() -> Lookup {
    let found = || {
        crate_dir()
            .ancestors()
            .map(|dir| dir.join("shared/istio-corpus"))
            .find(|dir| dir.is_dir())
    };
    let setting = std::env::var("ISTIO_CORPUS").unwrap_or_default();
    match setting.as_str() {
        "" => found().map_or(Lookup::Absent, Lookup::Found),
        "own" => Lookup::Own,
        "skip" => Lookup::Skip,
        "require" => Lookup::Found(found().unwrap_or_else(|| {
            panic!(
                "ISTIO_CORPUS=require, but there is no shared/istio-corpus above {}: put Istio's \
                 corpus there, or name its folder with ISTIO_CORPUS=/path/to/istio-corpus",
                crate_dir().display()
            )
        })),
        path => {
            let dir = crate_dir().join("..").join(path);
            assert!(
                dir.is_dir(),
                "ISTIO_CORPUS={path}: {} is not a folder",
                dir.display()
            );
            Lookup::Found(dir)
        }
    }
}
