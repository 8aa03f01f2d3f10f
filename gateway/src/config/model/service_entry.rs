//! `ServiceEntry` (hosts with their own endpoints or DNS) and `Gateway` (listeners).
//!
//! Pure: spec in, model and findings out; it may not resolve names or touch the network.

use std::net::IpAddr;

use super::tls::{ServerTls, server_tls};
use super::{Labels, Meta, Problems, SessionPolicy, session_policy};
use crate::config::spec;

/// A validated `ServiceEntry`.
#[derive(Debug, Clone)]
pub struct ServiceEntry {
    /// Identity and origin.
    pub meta: Meta,
    /// `hosts`, lowercased; Istio does not expand ServiceEntry hosts.
    pub hosts: Vec<String>,
    /// `ports[]`.
    pub ports: Vec<ServicePort>,
    /// `resolution`.
    pub resolution: Resolution,
    /// `endpoints[]`.
    pub endpoints: Vec<Endpoint>,
    /// The persistent sessions its labels ask for ([`super::session`]).
    pub session: Option<SessionPolicy>,
}

/// `ports[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `number`.
    pub number: u16,
    /// `name`.
    pub name: String,
    /// `protocol` (`HTTP`, `TCP`, …), uppercased; `None` when unset.
    pub protocol: Option<String>,
    /// `targetPort`: the endpoint port when an endpoint does not name one.
    pub target_port: Option<u16>,
}

/// `resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `NONE`: pass through to the address the client connected to.
    None,
    /// `STATIC`: the endpoints' addresses.
    Static,
    /// `DNS`: resolve endpoints (or hosts) and use every address.
    Dns,
    /// `DNS_ROUND_ROBIN`: resolve and use the first address per connection.
    DnsRoundRobin,
}

/// `endpoints[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `address`: an IP for STATIC, a name for DNS.
    pub address: String,
    /// `ports`: port name → endpoint port.
    pub ports: Vec<(String, u16)>,
    /// `labels`, matched by DestinationRule subsets.
    pub labels: Labels,
    /// `weight` (1 when unset or 0).
    pub weight: u32,
}

pub(crate) fn service_entry(
    spec: spec::ServiceEntrySpec,
    meta: Meta,
    p: &mut Problems,
) -> ServiceEntry {
    let hosts: Vec<String> = spec.hosts.unwrap_or_default();
    if hosts.is_empty() {
        p.error("spec.hosts", "at least one host is required");
    }
    for (i, host) in hosts.iter().enumerate() {
        super::virtual_service::check_host(p, &format!("spec.hosts[{i}]"), host);
    }
    let ports = ports(spec.ports.unwrap_or_default(), p);
    let resolution = resolution(spec.resolution.as_deref(), p);
    let endpoints = endpoints(spec.endpoints.unwrap_or_default(), resolution, &ports, p);
    if resolution == Resolution::Static && endpoints.is_empty() {
        p.error(
            "spec.endpoints",
            "resolution STATIC needs endpoints with addresses",
        );
    }
    let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
    if dns && endpoints.is_empty() {
        for (i, host) in hosts.iter().enumerate() {
            if host.contains('*') {
                let rule = format!(
                    "{host:?}: a wildcard host cannot be resolved by DNS without endpoints"
                );
                p.error(format!("spec.hosts[{i}]"), rule);
            }
        }
    }
    let session = session_policy(&meta, p);
    ServiceEntry {
        meta,
        session,
        hosts: hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        ports,
        resolution,
        endpoints,
    }
}

fn ports(spec: Vec<spec::ServicePort>, p: &mut Problems) -> Vec<ServicePort> {
    let mut ports: Vec<ServicePort> = Vec::new();
    for (i, port) in spec.into_iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let number = p.port(&format!("{at}.number"), port.number);
        if port.number.is_none() {
            p.error(format!("{at}.number"), "port number is required");
        }
        let name = port.name.unwrap_or_default();
        if name.is_empty() {
            p.error(format!("{at}.name"), "port name is required");
        }
        let target_port = p.port(&format!("{at}.targetPort"), port.target_port);
        let Some(number) = number else { continue };
        if ports.iter().any(|o| o.number == number) {
            p.error(
                format!("{at}.number"),
                format!("port {number} is listed twice"),
            );
        }
        if !name.is_empty() && ports.iter().any(|o| o.name == name) {
            p.error(
                format!("{at}.name"),
                format!("port name {name:?} is listed twice"),
            );
        }
        ports.push(ServicePort {
            number,
            name,
            protocol: port.protocol.map(|s| s.to_ascii_uppercase()),
            target_port,
        });
    }
    ports
}

fn resolution(spec: Option<&str>, p: &mut Problems) -> Resolution {
    match spec.unwrap_or("NONE") {
        "NONE" => Resolution::None,
        "STATIC" => Resolution::Static,
        "DNS" => Resolution::Dns,
        "DNS_ROUND_ROBIN" => Resolution::DnsRoundRobin,
        "DYNAMIC_DNS" => {
            p.error(
                "spec.resolution",
                "DYNAMIC_DNS is not supported by this gateway",
            );
            Resolution::None
        }
        other => {
            let rule = format!("{other:?} is not one of NONE, STATIC, DNS, DNS_ROUND_ROBIN");
            p.error("spec.resolution", rule);
            Resolution::None
        }
    }
}

fn endpoints(
    spec: Vec<spec::WorkloadEntry>,
    resolution: Resolution,
    ports: &[ServicePort],
    p: &mut Problems,
) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for (i, e) in spec.into_iter().enumerate() {
        let at = format!("spec.endpoints[{i}]");
        let address = e.address.unwrap_or_default();
        if address.is_empty() {
            p.error(format!("{at}.address"), "address is required");
        } else if resolution == Resolution::Static
            && address.parse::<IpAddr>().is_err()
            && !address.starts_with("unix://")
        {
            let rule = format!("{address:?} is not an IP address, which resolution STATIC needs");
            p.error(format!("{at}.address"), rule);
        }
        let mut endpoint_ports = Vec::new();
        for (name, number) in e.ports.unwrap_or_default() {
            let path = format!("{at}.ports.{name}");
            if !ports.iter().any(|port| port.name == name) {
                p.error(
                    &path,
                    format!("{name:?} names no port of this ServiceEntry"),
                );
            }
            if let Some(port) = p.port(&path, Some(number)) {
                endpoint_ports.push((name, port));
            }
        }
        endpoints.push(Endpoint {
            address,
            ports: endpoint_ports,
            labels: e.labels.unwrap_or_default(),
            // proto3 cannot tell 0 from unset, so Istio reads 0 as the default weight, 1.
            weight: e.weight.filter(|w| *w != 0).unwrap_or(1),
        });
    }
    endpoints
}

/// A validated Istio `Gateway`.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Identity and origin.
    pub meta: Meta,
    /// `selector` (kept for display; this gateway is the selected workload).
    pub selector: Labels,
    /// `servers[]`.
    pub servers: Vec<GatewayServer>,
}

/// `servers[]` entry: a listener port and the hosts it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayServer {
    /// `port.number`.
    pub port: u16,
    /// `port.protocol`, uppercased.
    pub protocol: Option<String>,
    /// `port.name`.
    pub port_name: Option<String>,
    /// `hosts` (`ns/host` forms kept as written).
    pub hosts: Vec<String>,
    /// `name`.
    pub name: Option<String>,
    /// `tls` of an HTTPS server: the TLS it terminates.
    pub tls: Option<ServerTls>,
    /// `tls.httpsRedirect` of a plain HTTP server: answer 301 to the https URL.
    pub https_redirect: bool,
}

impl Gateway {
    /// The host parts of the `servers[].hosts` that admit a VirtualService of `namespace`: a
    /// server host `ns/host` admits only namespace `ns`, `./host` only the Gateway's own, and
    /// `*/host` or a bare `host` every namespace (Istio's `Server.hosts`).
    pub fn hosts_for<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.servers
            .iter()
            .flat_map(|s| s.hosts.iter())
            .filter_map(move |h| match h.split_once('/') {
                None => Some(h.as_str()),
                Some(("*", host)) => Some(host),
                Some((".", host)) => (self.meta.namespace == namespace).then_some(host),
                Some((ns, host)) => (ns == namespace).then_some(host),
            })
    }

    /// The hosts a VirtualService bound to this Gateway is served for: each of its `hosts`
    /// that overlaps a server host admitting its namespace, narrowed to the more specific of
    /// the two, as Istio builds a gateway's virtual hosts (a VirtualService for `*` behind a
    /// server for `shop.example.com` serves `shop.example.com` only). In `vs_hosts` order,
    /// without repeats; empty when none overlaps.
    pub fn served_hosts(&self, namespace: &str, vs_hosts: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for vs_host in vs_hosts {
            for server_host in self.hosts_for(namespace) {
                if let Some(host) = host_overlap(server_host, vs_host)
                    && !out.iter().any(|h| h.eq_ignore_ascii_case(host))
                {
                    out.push(host.to_ascii_lowercase());
                }
            }
        }
        out
    }
}

/// Whether two host patterns (exact names, `*.suffix` wildcards, `*`) can name one host, and
/// if so the more specific of the two: `*.example.com` and `shop.example.com` give
/// `shop.example.com`, `*` and `*.example.com` give `*.example.com`. Case-insensitive.
pub fn host_overlap<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    // `wild` covers `name` when it is `*`, or `*suffix` with `name` longer and ending in it
    // (`*.example.com` covers `a.example.com` and `*.a.example.com`, not `example.com`).
    let covers = |wild: &str, name: &str| {
        wild == "*"
            || wild.strip_prefix('*').is_some_and(|suffix| {
                name.len() > suffix.len()
                    && name.as_bytes()[name.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            })
    };
    if a.eq_ignore_ascii_case(b) || covers(a, b) {
        Some(b)
    } else if covers(b, a) {
        Some(a)
    } else {
        None
    }
}

pub(crate) fn gateway(spec: spec::GatewaySpec, meta: Meta, p: &mut Problems) -> Gateway {
    let servers = spec.servers.unwrap_or_default();
    if servers.is_empty() {
        p.error("spec.servers", "at least one server is required");
    }
    let mut out = Vec::new();
    for (i, s) in servers.into_iter().enumerate() {
        let at = format!("spec.servers[{i}]");
        let port = s.port.unwrap_or_default();
        if port.number.is_none() {
            p.error(format!("{at}.port.number"), "port number is required");
        }
        let hosts = s.hosts.unwrap_or_default();
        if hosts.is_empty() {
            p.error(format!("{at}.hosts"), "at least one host is required");
        }
        let protocol = port.protocol.map(|s| s.to_ascii_uppercase());
        let (tls, https_redirect) = server_tls(s.tls, protocol.as_deref(), &at, p);
        if let Some(number) = p.port(&format!("{at}.port.number"), port.number) {
            out.push(GatewayServer {
                port: number,
                protocol,
                port_name: port.name,
                hosts,
                name: s.name,
                tls,
                https_redirect,
            });
        }
    }
    Gateway {
        meta,
        selector: spec.selector.unwrap_or_default(),
        servers: out,
    }
}
