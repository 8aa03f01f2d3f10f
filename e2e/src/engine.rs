//! The Docker engine as the tests need it: reachable, with the stack's images, and a private
//! network that removes itself.
//!
//! testcontainers starts and removes the containers; this module does the two things it does not
//! cover: networks created with a label (so a sweep can find leftovers) and removed when the
//! test ends, and network aliases, which is how Docker's DNS answers one name with every replica
//! (compose's `networks.default.aliases`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use bollard::Docker;
use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkCreateRequest};

/// The label on every network and container the tests create; `just e2e` checks none is left.
pub const LABEL: &str = "org.sticky.e2e";

/// Set `STICKY_E2E=skip` to skip the Docker tests where Docker cannot run.
pub const SKIP_VAR: &str = "STICKY_E2E";

/// What can go wrong with the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No Docker daemon answers on the local socket.
    #[error(
        "Docker is not reachable ({0}). These tests start containers: install and start Docker, \
         or set {SKIP_VAR}=skip to skip them"
    )]
    Unreachable(String),
    /// An image of the stack is not built.
    #[error("image {0} is missing: build the images first (`PROFILE=dev just images`)")]
    MissingImage(String),
    /// A Docker API call failed.
    #[error("docker: {what}: {source}")]
    Api {
        /// The call.
        what: String,
        /// Docker's answer.
        #[source]
        source: bollard::errors::Error,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Api { what, source }
}

/// A connection to the local Docker engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket), at the API version
    /// the engine speaks.
    pub async fn connect() -> Result<Self, EngineError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        Ok(Self { docker })
    }

    /// The engine for a test: `None` (with a line on stderr) when Docker is unreachable and
    /// `STICKY_E2E=skip`; a panic naming the reason when it is unreachable otherwise, so a
    /// machine without Docker never passes these tests silently.
    pub async fn for_test(test: &str) -> Option<Self> {
        match Self::connect().await {
            Ok(engine) => Some(engine),
            Err(e) if std::env::var(SKIP_VAR).as_deref() == Ok("skip") => {
                eprintln!("{test}: SKIPPED ({SKIP_VAR}=skip): {e}");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// Fails unless every `sticky/NAME:IMAGE_TAG` image exists locally (nothing can be pulled).
    pub async fn require_images(&self, names: &[&str]) -> Result<(), EngineError> {
        for name in names {
            let image = format!("sticky/{name}:{}", crate::IMAGE_TAG);
            if self.docker.inspect_image(&image).await.is_err() {
                return Err(EngineError::MissingImage(image));
            }
        }
        Ok(())
    }

    /// Creates a private bridge network named `prefix-<pid>-<n>`, removed when the guard drops.
    pub async fn network(&self, prefix: &str) -> Result<NetworkGuard, EngineError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(LABEL.to_owned(), "1".to_owned())])),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .map_err(api(format!("create network {name}")))?;
        Ok(NetworkGuard { name })
    }

    /// Connects a running container to `network` under `alias`, as compose's
    /// `networks.<name>.aliases` does: Docker's DNS then answers `alias` with this container's
    /// address among all others that carry it.
    pub async fn connect_with_alias(
        &self,
        network: &str,
        container: &str,
        alias: &str,
    ) -> Result<(), EngineError> {
        let request = NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![alias.to_owned()]),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(api(format!("connect {container} to {network}")))
    }
}

impl Engine {
    /// The container's health status (`starting`, `healthy`, `unhealthy`), `None` without a
    /// health check.
    pub async fn health(&self, container: &str) -> Result<Option<String>, EngineError> {
        let details = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(api(format!("inspect {container}")))?;
        Ok(details
            .state
            .and_then(|s| s.health)
            .and_then(|h| h.status)
            .map(|s| s.to_string()))
    }
}

/// A Docker network that is removed when dropped (after the containers on it, which must be
/// dropped first: keep the guard as the last field of whatever owns both).
#[derive(Debug)]
pub struct NetworkGuard {
    name: String,
}

impl NetworkGuard {
    /// The network's name, for `with_network` and aliases.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside the test's runtime (or while it unwinds from a
        // panic): remove the network from a thread with a runtime and a client of its own.
        let name = std::mem::take(&mut self.name);
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let engine = Engine::connect().await.map_err(|e| e.to_string())?;
                // A container removed an instant ago may still hold its endpoint: try a few times.
                let mut last = String::new();
                for _ in 0..20 {
                    match engine.docker.remove_network(&name).await {
                        Ok(()) => return Ok(()),
                        Err(e) => last = format!("network {name}: {e}"),
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(last)
            })
        })
        .join();
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("e2e: could not remove {e}"),
            Err(_) => eprintln!("e2e: the network cleanup thread panicked"),
        }
    }
}
