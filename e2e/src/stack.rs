//! The stack of compose.yaml, started by a test: replicas of `sticky/sticky-svc` carrying the
//! alias `sticky-svc.default.svc.cluster.local` on a private network, and gateways reading
//! `k8s/istio/` that publish their proxy and admin ports on the host.
//!
//! Containers run hardened as in compose.yaml (read-only root, no capabilities, no new
//! privileges). Everything is removed when the [`Stack`] drops, a failed test included:
//! testcontainers removes the containers, then the network guard removes the network.

use std::time::{Duration, Instant};

use testcontainers::core::{AccessMode, Healthcheck, IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

use crate::client::Client;
use crate::engine::{Engine, EngineError, LABEL, NetworkGuard};
use crate::{IMAGE_TAG, SERVICE_HOST, workspace_root};

/// How a test wants its stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// sticky-svc replicas.
    pub replicas: usize,
    /// Gateway containers, each with its own published port.
    pub gateways: usize,
    /// Each user's first-call cost (`FIRST_CALL_COST`).
    pub first_call_cost: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            replicas: 5,
            gateways: 1,
            first_call_cost: Duration::from_secs(1),
        }
    }
}

/// One sticky-svc container and the name it reports in `x-served-by`.
pub struct Replica {
    container: ContainerAsync<GenericImage>,
    /// Its host name: Docker sets it to the first 12 characters of the container id.
    pub host: String,
}

/// One gateway container and its published ports on 127.0.0.1.
pub struct Gateway {
    _container: ContainerAsync<GenericImage>,
    /// The proxy port (container 8080).
    pub port: u16,
    /// The admin port (container 15000).
    pub admin: u16,
}

/// A running stack. Field order is drop order: containers first, then their network.
pub struct Stack {
    /// The replicas, in start order.
    pub replicas: Vec<Replica>,
    /// The gateways.
    pub gateways: Vec<Gateway>,
    network: NetworkGuard,
    engine: Engine,
}

/// What starting or driving the stack can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The engine refused something.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A container did not start or stop.
    #[error("container: {0}")]
    Container(#[from] testcontainers::TestcontainersError),
    /// A restarted replica never passed its health check.
    #[error("replica {0} did not become healthy")]
    Unhealthy(String),
    /// The gateways did not reach the expected endpoint count in time.
    #[error("gateways never saw {want} endpoint(s) within {within:?} (last: {last})")]
    Endpoints {
        /// Endpoints waited for.
        want: usize,
        /// How long.
        within: Duration,
        /// The last `routable` counts seen.
        last: String,
    },
}

fn hardened(request: ContainerRequest<GenericImage>) -> ContainerRequest<GenericImage> {
    request
        .with_readonly_rootfs(true)
        .with_cap_drop("ALL")
        .with_security_opt("no-new-privileges:true")
        .with_label(LABEL, "1")
        .with_startup_timeout(Duration::from_secs(60))
}

/// The image's own health check, polled often so a test waits a fraction of a second.
fn health(binary: &str) -> Healthcheck {
    Healthcheck::cmd([binary, "healthcheck"])
        .with_interval(Duration::from_millis(250))
        .with_timeout(Duration::from_secs(2))
        .with_retries(40)
}

impl Stack {
    /// Starts `options.replicas` replicas and `options.gateways` gateways on a new network, and
    /// waits until every gateway routes to every replica.
    pub async fn start(engine: Engine, options: &StackOptions) -> Result<Self, StackError> {
        engine.require_images(&["sticky-svc", "gateway"]).await?;
        let network = engine.network("sticky-e2e").await?;
        let mut stack = Self {
            replicas: Vec::new(),
            gateways: Vec::new(),
            network,
            engine,
        };
        let cost = humantime(options.first_call_cost);
        // Side by side: each waits for its own health check.
        let replicas = (0..options.replicas).map(|_| stack.start_replica(&cost));
        let started = futures::future::join_all(replicas).await;
        for replica in started {
            stack.replicas.push(replica?);
        }
        for _ in 0..options.gateways {
            let gateway = stack.start_gateway().await?;
            stack.gateways.push(gateway);
        }
        stack
            .wait_routable(options.replicas, Duration::from_secs(10))
            .await?;
        Ok(stack)
    }

    async fn start_replica(&self, cost: &str) -> Result<Replica, StackError> {
        let request = GenericImage::new("sticky/sticky-svc", IMAGE_TAG)
            .with_wait_for(WaitFor::healthcheck())
            .with_env_var("LISTEN", "0.0.0.0:8080")
            .with_env_var("FIRST_CALL_COST", cost)
            .with_health_check(health("/sticky-svc"));
        // Started on the default bridge, then attached to the stack's network under the
        // service alias (testcontainers cannot set aliases at creation).
        let container = hardened(request).start().await?;
        self.engine
            .connect_with_alias(self.network.name(), container.id(), SERVICE_HOST)
            .await?;
        let host = container.id().chars().take(12).collect();
        Ok(Replica { container, host })
    }

    async fn start_gateway(&self) -> Result<Gateway, StackError> {
        let config = workspace_root().join("k8s/istio");
        let request = GenericImage::new("sticky/gateway", IMAGE_TAG)
            .with_exposed_port(8080.tcp())
            .with_exposed_port(15000.tcp())
            .with_wait_for(WaitFor::healthcheck())
            .with_cmd(["run"])
            .with_network(self.network.name())
            .with_env_var("GATEWAY_CONFIG", "/etc/sticky/istio")
            .with_env_var("GATEWAY_LISTEN", "0.0.0.0:8080")
            .with_env_var("GATEWAY_ADMIN", "0.0.0.0:15000")
            // As compose.yaml: Docker drops a replica's record only once it has exited.
            .with_env_var("GATEWAY_DNS_MAX_REFRESH", "1s")
            .with_mount(
                Mount::bind_mount(config.to_string_lossy(), "/etc/sticky/istio")
                    .with_access_mode(AccessMode::ReadOnly),
            )
            .with_health_check(health("/gateway"));
        let container = hardened(request).start().await?;
        let port = container.get_host_port_ipv4(8080).await?;
        let admin = container.get_host_port_ipv4(15000).await?;
        Ok(Gateway {
            _container: container,
            port,
            admin,
        })
    }

    /// The first gateway's proxy port.
    pub fn port(&self) -> u16 {
        self.gateways[0].port
    }

    /// Stops replica `i` (SIGTERM; it drains, then exits) and returns its host name.
    pub async fn stop_replica(&self, i: usize) -> Result<&str, StackError> {
        self.replicas[i].container.stop().await?;
        Ok(&self.replicas[i].host)
    }

    /// Starts replica `i` again (same container, same alias, an empty cache) and waits until
    /// its health check passes, as `just scale` does. Docker's DNS lists a container as soon as
    /// it starts, listening or not (there is no readiness gate as on Kubernetes).
    pub async fn restart_replica(&self, i: usize) -> Result<(), StackError> {
        let container = &self.replicas[i].container;
        container.start().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.engine.health(container.id()).await?.as_deref() != Some("healthy") {
            if Instant::now() >= deadline {
                return Err(StackError::Unhealthy(self.replicas[i].host.clone()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Waits until every gateway's admin `/clusters` reports `want` routable endpoints.
    pub async fn wait_routable(&self, want: usize, within: Duration) -> Result<(), StackError> {
        let client = Client::new();
        let deadline = Instant::now() + within;
        loop {
            let mut counts = Vec::new();
            for gateway in &self.gateways {
                let reply = client
                    .get(gateway.admin, "/clusters", None, Duration::from_secs(2))
                    .await;
                counts.push(reply.ok().and_then(|r| routable(&r.body)));
            }
            if counts.iter().all(|c| *c == Some(want)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StackError::Endpoints {
                    want,
                    within,
                    last: format!("{counts:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `routable` count of the one cluster in an admin `/clusters` answer.
fn routable(body: &str) -> Option<usize> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let count = value["clusters"][0]["routable"].as_u64()?;
    usize::try_from(count).ok()
}

fn humantime(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_routable_count() {
        let body = r#"{"clusters":[{"cluster":"outbound|8080||x","routable":5}]}"#;
        assert_eq!(routable(body), Some(5));
        assert_eq!(routable(r#"{"clusters":[]}"#), None);
        assert_eq!(routable("not json"), None);
    }

    #[test]
    fn costs_are_written_as_humantime() {
        assert_eq!(humantime(Duration::from_secs(1)), "1000ms");
        assert_eq!(humantime(Duration::from_millis(250)), "250ms");
    }
}
