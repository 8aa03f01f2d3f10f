//! The stack in containers, driven from Rust tests: five `sticky/sticky-svc` replicas and one or
//! more `sticky/gateway` containers on a private Docker network, built from the images
//! `just images` makes, configured by the same `k8s/istio/` YAML that compose and Kubernetes use.
//!
//! The tests in `tests/containers.rs` are `#[ignore]`d, so `cargo test --workspace` stays free of
//! Docker; `just e2e` builds the images and runs them with `--ignored`. When they run and Docker
//! is missing they fail with the reason, unless `STICKY_E2E=skip` says to skip them.
//!
//! - [`engine`]: is Docker there, are the images built; the network guard that removes itself.
//! - [`stack`]: starting, stopping and restarting replicas and gateways.
//! - [`client`]: the article's `GET /ping` with `x-user`, as a test sees it.
//!
//! Tests only: nothing in the shipped binaries depends on this crate.

pub mod client;
pub mod engine;
pub mod stack;

pub use client::{Client, Reply};
pub use engine::{Engine, EngineError};
pub use stack::{Stack, StackOptions};

/// The tag every image of the stack carries: the workspace version, as `scripts/images.sh` tags.
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");

/// The name the Istio YAML routes to, which the replicas carry as a network alias.
pub const SERVICE_HOST: &str = "sticky-svc.default.svc.cluster.local";

/// The workspace root (the folder of compose.yaml and k8s/).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace root")
        .to_path_buf()
}
