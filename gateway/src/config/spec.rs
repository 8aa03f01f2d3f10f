//! Serde types mirroring Istio's YAML one to one (`networking.istio.io` v1alpha3/v1beta1/v1),
//! limited to the fields this gateway implements.
//!
//! Field names are the proto's, in the proto-JSON spelling, so grepping `tableSize` finds both
//! the YAML and the Rust. Every field is optional as in proto3; a `oneof` is a set of `Option`s
//! here and becomes an enum in [`super::model`], where the rules are checked. Fields Istio has
//! but this gateway ignores never reach these types: the `schema` walk reports and drops them
//! first, which is also why no type here denies unknown fields.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `map<string, string>` (labels, header values).
pub type StringMap = BTreeMap<String, String>;

/// `spec` of a `VirtualService`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    pub hosts: Option<Vec<String>>,
    pub gateways: Option<Vec<String>>,
    pub http: Option<Vec<HttpRoute>>,
}

/// `VirtualService.http[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub match_: Option<Vec<HttpMatchRequest>>,
    pub route: Option<Vec<HttpRouteDestination>>,
    pub direct_response: Option<HttpDirectResponse>,
    pub rewrite: Option<HttpRewrite>,
    pub timeout: Option<String>,
    pub retries: Option<HttpRetry>,
    pub fault: Option<HttpFaultInjection>,
    pub headers: Option<Headers>,
}

/// `http[].match[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: Option<BTreeMap<String, StringMatch>>,
    pub query_params: Option<BTreeMap<String, StringMatch>>,
    pub ignore_uri_case: Option<bool>,
    pub without_headers: Option<BTreeMap<String, StringMatch>>,
}

/// `StringMatch`: a oneof of `exact`, `prefix`, `regex`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// `http[].route[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    pub destination: Option<Destination>,
    pub weight: Option<i64>,
    pub headers: Option<Headers>,
}

/// `Destination`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub host: Option<String>,
    pub subset: Option<String>,
    pub port: Option<PortSelector>,
}

/// `PortSelector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    pub number: Option<u32>,
}

/// `Headers`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

/// `Headers.HeaderOperations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOperations {
    pub set: Option<StringMap>,
    pub add: Option<StringMap>,
    pub remove: Option<Vec<String>>,
}

/// `HTTPDirectResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpDirectResponse {
    pub status: Option<u32>,
    pub body: Option<HttpBody>,
}

/// `HTTPBody` (the `string` arm of its oneof).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBody {
    pub string: Option<String>,
}

/// `HTTPRewrite`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
}

/// `HTTPRetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    pub attempts: Option<i64>,
    pub per_try_timeout: Option<String>,
    pub retry_on: Option<String>,
}

/// `HTTPFaultInjection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpFaultInjection {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

/// `HTTPFaultInjection.Delay`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    pub percent: Option<i64>,
    pub fixed_delay: Option<String>,
    pub percentage: Option<Percent>,
}

/// `HTTPFaultInjection.Abort`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    pub http_status: Option<i64>,
    pub percentage: Option<Percent>,
}

/// `Percent`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Percent {
    pub value: Option<f64>,
}

/// `spec` of a `DestinationRule`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: Option<String>,
    pub traffic_policy: Option<TrafficPolicy>,
    pub subsets: Option<Vec<Subset>>,
}

/// `TrafficPolicy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTlsSettings>,
    pub port_level_settings: Option<Vec<PortTrafficPolicy>>,
}

/// `TrafficPolicy.PortTrafficPolicy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    pub port: Option<PortSelector>,
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTlsSettings>,
}

/// `ClientTLSSettings` (`clientCertificate`, `privateKey`, `credentialName` and `caCrl` are
/// ignored by the schema walk).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    pub mode: Option<String>,
    pub ca_certificates: Option<String>,
    pub subject_alt_names: Option<Vec<String>>,
    pub sni: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

/// `Subset`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    pub name: Option<String>,
    pub labels: Option<StringMap>,
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `LoadBalancerSettings`: the oneof `simple` | `consistentHash`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    pub simple: Option<String>,
    pub consistent_hash: Option<ConsistentHashLb>,
}

/// `LoadBalancerSettings.ConsistentHashLB`: oneof hash key, oneof algorithm.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    pub http_header_name: Option<String>,
    pub http_cookie: Option<HttpCookie>,
    pub use_source_ip: Option<bool>,
    pub http_query_parameter_name: Option<String>,
    pub ring_hash: Option<RingHash>,
    pub maglev: Option<MagLev>,
    /// Deprecated in Istio in favour of `ringHash.minimumRingSize`.
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.HTTPCookie`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCookie {
    pub name: Option<String>,
    pub path: Option<String>,
    pub ttl: Option<String>,
}

/// `ConsistentHashLB.RingHash`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.MagLev`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MagLev {
    pub table_size: Option<u64>,
}

/// `ConnectionPoolSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPoolSettings {
    pub tcp: Option<TcpSettings>,
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    pub max_connections: Option<i64>,
    pub connect_timeout: Option<String>,
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    pub http1_max_pending_requests: Option<i64>,
    pub max_requests_per_connection: Option<i64>,
    pub idle_timeout: Option<String>,
    pub h2_upgrade_policy: Option<String>,
    pub http2_max_requests: Option<i64>,
}

/// `OutlierDetection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    pub consecutive_gateway_errors: Option<u32>,
    pub consecutive_5xx_errors: Option<u32>,
    pub interval: Option<String>,
    pub base_ejection_time: Option<String>,
    pub max_ejection_percent: Option<i64>,
    pub min_health_percent: Option<i64>,
}

/// `spec` of a `ServiceEntry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    pub hosts: Option<Vec<String>>,
    pub ports: Option<Vec<ServicePort>>,
    pub resolution: Option<String>,
    pub endpoints: Option<Vec<WorkloadEntry>>,
}

/// `ServicePort`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub number: Option<u32>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<u32>,
}

/// `WorkloadEntry` (a `ServiceEntry` endpoint).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    pub address: Option<String>,
    pub ports: Option<BTreeMap<String, u32>>,
    pub labels: Option<StringMap>,
    pub weight: Option<u32>,
}

/// `spec` of a `Gateway`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub servers: Option<Vec<Server>>,
    pub selector: Option<StringMap>,
}

/// `Server`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub port: Option<GatewayPort>,
    pub hosts: Option<Vec<String>>,
    pub tls: Option<ServerTlsSettings>,
    pub name: Option<String>,
}

/// `Port` of a `Server`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPort {
    pub number: Option<u32>,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

/// `ServerTLSSettings` (`caCrl`, `caCertCredentialName`, `verifyCertificateSpki`,
/// `verifyCertificateHash` and `insecureSkipVerify` are ignored by the schema walk).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsSettings {
    pub https_redirect: Option<bool>,
    pub mode: Option<String>,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub credential_name: Option<String>,
    pub credential_names: Option<Vec<String>>,
    pub tls_certificates: Option<Vec<TlsCertificate>>,
    pub subject_alt_names: Option<Vec<String>>,
    pub min_protocol_version: Option<String>,
    pub max_protocol_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
}

/// `ServerTLSSettings.TLSCertificate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsCertificate {
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
}
