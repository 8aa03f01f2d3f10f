//! Every field of the Istio networking messages the gateway reads, transcribed from istio/api
//! `networking/v1alpha3/{virtual_service,destination_rule,service_entry,gateway,
//! workload_entry}.proto` and `type/v1beta1/selector.proto` (commit b8f8791d, July 2026).
//!
//! Names are the proto JSON names (lowerCamelCase). `sup` marks a field this gateway implements,
//! `ign` a real Istio field it reports as ignored. Messages that are ignored as a whole (a
//! VirtualService's `tls`, `corsPolicy`, …) are still listed field by field so a typo inside
//! them is an error too, as Istio's validation would make it.
//!
//! Data only: it may not import the model or the loader.

use super::{Field, Msg, Support, Ty};

const S: Ty = Ty::Scalar;
const F: Ty = Ty::Free;

const fn sup(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        support: Support::Yes,
    }
}

const fn ign(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        support: Support::Ignored,
    }
}

/// A `reserved` name: Istio dropped the field, but YAML written for older releases has it.
const fn gone(name: &'static str) -> Field {
    Field {
        name,
        ty: Ty::Free,
        support: Support::Removed,
    }
}

// ---- VirtualService -------------------------------------------------------------------------

pub(crate) static VIRTUAL_SERVICE: Msg = Msg(&[
    sup("hosts", S),
    sup("gateways", S),
    sup("http", Ty::Msg(&HTTP_ROUTE)),
    ign("tls", Ty::Msg(&TLS_ROUTE)),
    ign("tcp", Ty::Msg(&TCP_ROUTE)),
    ign("exportTo", S),
]);
static DESTINATION: Msg = Msg(&[
    sup("host", S),
    sup("subset", S),
    sup("port", Ty::Msg(&PORT_SELECTOR)),
]);
static PORT_SELECTOR: Msg = Msg(&[sup("number", S), gone("name")]);
static HTTP_ROUTE: Msg = Msg(&[
    sup("name", S),
    sup("match", Ty::Msg(&HTTP_MATCH)),
    sup("route", Ty::Msg(&HTTP_ROUTE_DESTINATION)),
    ign("redirect", Ty::Msg(&HTTP_REDIRECT)),
    sup("directResponse", Ty::Msg(&HTTP_DIRECT_RESPONSE)),
    ign("delegate", Ty::Msg(&DELEGATE)),
    sup("rewrite", Ty::Msg(&HTTP_REWRITE)),
    sup("timeout", S),
    sup("retries", Ty::Msg(&HTTP_RETRY)),
    sup("fault", Ty::Msg(&HTTP_FAULT)),
    ign("mirror", Ty::Msg(&DESTINATION)),
    ign("mirrors", Ty::Msg(&HTTP_MIRROR_POLICY)),
    ign("mirrorPercent", S),
    ign("mirrorPercentage", Ty::Msg(&PERCENT)),
    ign("corsPolicy", Ty::Msg(&CORS_POLICY)),
    sup("headers", Ty::Msg(&HEADERS)),
    gone("websocketUpgrade"),
    gone("appendHeaders"),
    gone("removeResponseHeaders"),
    gone("appendResponseHeaders"),
    gone("removeRequestHeaders"),
    gone("appendRequestHeaders"),
]);
static DELEGATE: Msg = Msg(&[sup("name", S), sup("namespace", S)]);
static HEADERS: Msg = Msg(&[
    sup("request", Ty::Msg(&HEADER_OPERATIONS)),
    sup("response", Ty::Msg(&HEADER_OPERATIONS)),
]);
static HEADER_OPERATIONS: Msg = Msg(&[sup("set", F), sup("add", F), sup("remove", S)]);
static TLS_ROUTE: Msg = Msg(&[
    sup("match", Ty::Msg(&TLS_MATCH)),
    sup("route", Ty::Msg(&ROUTE_DESTINATION)),
]);
static TCP_ROUTE: Msg = Msg(&[
    sup("match", Ty::Msg(&L4_MATCH)),
    sup("route", Ty::Msg(&ROUTE_DESTINATION)),
]);
static HTTP_MATCH: Msg = Msg(&[
    sup("name", S),
    sup("uri", Ty::Msg(&STRING_MATCH)),
    ign("scheme", Ty::Msg(&STRING_MATCH)),
    sup("method", Ty::Msg(&STRING_MATCH)),
    sup("authority", Ty::Msg(&STRING_MATCH)),
    sup("headers", Ty::MapOf(&STRING_MATCH)),
    ign("port", S),
    ign("sourceLabels", F),
    ign("gateways", S),
    sup("queryParams", Ty::MapOf(&STRING_MATCH)),
    sup("ignoreUriCase", S),
    sup("withoutHeaders", Ty::MapOf(&STRING_MATCH)),
    ign("sourceNamespace", S),
    ign("statPrefix", S),
]);
static HTTP_ROUTE_DESTINATION: Msg = Msg(&[
    sup("destination", Ty::Msg(&DESTINATION)),
    sup("weight", S),
    sup("headers", Ty::Msg(&HEADERS)),
    gone("removeResponseHeaders"),
    gone("appendResponseHeaders"),
    gone("removeRequestHeaders"),
    gone("appendRequestHeaders"),
]);
static ROUTE_DESTINATION: Msg = Msg(&[sup("destination", Ty::Msg(&DESTINATION)), sup("weight", S)]);
static L4_MATCH: Msg = Msg(&[
    sup("destinationSubnets", S),
    sup("port", S),
    sup("sourceSubnet", S),
    sup("sourceLabels", F),
    sup("gateways", S),
    sup("sourceNamespace", S),
]);
static TLS_MATCH: Msg = Msg(&[
    sup("sniHosts", S),
    sup("destinationSubnets", S),
    sup("port", S),
    gone("sourceSubnet"),
    sup("sourceLabels", F),
    sup("gateways", S),
    sup("sourceNamespace", S),
]);
static HTTP_REDIRECT: Msg = Msg(&[
    sup("uri", S),
    sup("authority", S),
    sup("port", S),
    sup("derivePort", S),
    sup("scheme", S),
    sup("redirectCode", S),
    sup("prefixRewrite", S),
]);
static HTTP_DIRECT_RESPONSE: Msg = Msg(&[sup("status", S), sup("body", Ty::Msg(&HTTP_BODY))]);
// `bytes` would need base64 decoding; the gateway serves `string` bodies only.
static HTTP_BODY: Msg = Msg(&[sup("string", S), ign("bytes", S)]);
static HTTP_REWRITE: Msg = Msg(&[
    sup("uri", S),
    sup("authority", S),
    ign("uriRegexRewrite", Ty::Msg(&REGEX_REWRITE)),
]);
static REGEX_REWRITE: Msg = Msg(&[sup("match", S), sup("rewrite", S)]);
pub(crate) static STRING_MATCH: Msg = Msg(&[sup("exact", S), sup("prefix", S), sup("regex", S)]);
static HTTP_RETRY: Msg = Msg(&[
    sup("attempts", S),
    sup("perTryTimeout", S),
    sup("retryOn", S),
    ign("retryRemoteLocalities", S),
    ign("retryIgnorePreviousHosts", S),
    ign("backoff", S),
]);
static CORS_POLICY: Msg = Msg(&[
    sup("allowOrigin", S),
    sup("allowOrigins", Ty::Msg(&STRING_MATCH)),
    sup("allowMethods", S),
    sup("allowHeaders", S),
    sup("exposeHeaders", S),
    sup("maxAge", S),
    sup("allowCredentials", S),
    sup("unmatchedPreflights", S),
]);
static HTTP_FAULT: Msg = Msg(&[
    sup("delay", Ty::Msg(&FAULT_DELAY)),
    sup("abort", Ty::Msg(&FAULT_ABORT)),
]);
static FAULT_DELAY: Msg = Msg(&[
    sup("percent", S),
    sup("fixedDelay", S),
    ign("exponentialDelay", S),
    sup("percentage", Ty::Msg(&PERCENT)),
]);
static FAULT_ABORT: Msg = Msg(&[
    sup("httpStatus", S),
    ign("grpcStatus", S),
    ign("http2Error", S),
    sup("percentage", Ty::Msg(&PERCENT)),
    gone("percent"),
]);
static HTTP_MIRROR_POLICY: Msg = Msg(&[
    sup("destination", Ty::Msg(&DESTINATION)),
    sup("percentage", Ty::Msg(&PERCENT)),
]);
static PERCENT: Msg = Msg(&[sup("value", S)]);

// ---- DestinationRule ------------------------------------------------------------------------

pub(crate) static DESTINATION_RULE: Msg = Msg(&[
    sup("host", S),
    sup("trafficPolicy", Ty::Msg(&TRAFFIC_POLICY)),
    sup("subsets", Ty::Msg(&SUBSET)),
    ign("exportTo", S),
    ign("workloadSelector", Ty::Msg(&WORKLOAD_SELECTOR)),
]);
static TRAFFIC_POLICY: Msg = Msg(&[
    sup("loadBalancer", Ty::Msg(&LOAD_BALANCER)),
    sup("connectionPool", Ty::Msg(&CONNECTION_POOL)),
    sup("outlierDetection", Ty::Msg(&OUTLIER_DETECTION)),
    sup("tls", Ty::Msg(&CLIENT_TLS)),
    sup("portLevelSettings", Ty::Msg(&PORT_TRAFFIC_POLICY)),
    ign("tunnel", Ty::Msg(&TUNNEL)),
    ign("proxyProtocol", Ty::Msg(&PROXY_PROTOCOL)),
    ign("retryBudget", Ty::Msg(&RETRY_BUDGET)),
]);
static PORT_TRAFFIC_POLICY: Msg = Msg(&[
    sup("port", Ty::Msg(&PORT_SELECTOR)),
    sup("loadBalancer", Ty::Msg(&LOAD_BALANCER)),
    sup("connectionPool", Ty::Msg(&CONNECTION_POOL)),
    sup("outlierDetection", Ty::Msg(&OUTLIER_DETECTION)),
    sup("tls", Ty::Msg(&CLIENT_TLS)),
]);
static TUNNEL: Msg = Msg(&[
    sup("protocol", S),
    sup("targetHost", S),
    sup("targetPort", S),
]);
static PROXY_PROTOCOL: Msg = Msg(&[sup("version", S)]);
static RETRY_BUDGET: Msg = Msg(&[
    sup("percent", S),
    sup("minRetryConcurrency", S),
    sup("budgetInterval", S),
]);
static SUBSET: Msg = Msg(&[
    sup("name", S),
    sup("labels", F),
    sup("trafficPolicy", Ty::Msg(&TRAFFIC_POLICY)),
]);
static LOAD_BALANCER: Msg = Msg(&[
    sup("simple", S),
    sup("consistentHash", Ty::Msg(&CONSISTENT_HASH)),
    ign("localityLbSetting", Ty::Msg(&LOCALITY_LB)),
    ign("zoneAwareLbSetting", Ty::Msg(&ZONE_AWARE_LB)),
    ign("warmupDurationSecs", S),
    ign("warmup", Ty::Msg(&WARMUP)),
]);
pub(crate) static CONSISTENT_HASH: Msg = Msg(&[
    sup("httpHeaderName", S),
    sup("httpCookie", Ty::Msg(&HTTP_COOKIE)),
    sup("useSourceIp", S),
    sup("httpQueryParameterName", S),
    sup("ringHash", Ty::Msg(&RING_HASH)),
    sup("maglev", Ty::Msg(&MAGLEV)),
    sup("minimumRingSize", S),
]);
static HTTP_COOKIE: Msg = Msg(&[
    sup("name", S),
    sup("path", S),
    sup("ttl", S),
    ign("attributes", Ty::Msg(&COOKIE_ATTRIBUTE)),
]);
static COOKIE_ATTRIBUTE: Msg = Msg(&[sup("name", S), sup("value", S)]);
static RING_HASH: Msg = Msg(&[sup("minimumRingSize", S)]);
static MAGLEV: Msg = Msg(&[sup("tableSize", S)]);
static WARMUP: Msg = Msg(&[
    sup("duration", S),
    sup("minimumPercent", S),
    sup("aggression", S),
]);
static CONNECTION_POOL: Msg = Msg(&[
    sup("tcp", Ty::Msg(&TCP_SETTINGS)),
    sup("http", Ty::Msg(&HTTP_SETTINGS)),
]);
static TCP_SETTINGS: Msg = Msg(&[
    sup("maxConnections", S),
    sup("connectTimeout", S),
    ign("tcpKeepalive", Ty::Msg(&TCP_KEEPALIVE)),
    ign("maxConnectionDuration", S),
    ign("idleTimeout", S),
]);
static TCP_KEEPALIVE: Msg = Msg(&[sup("probes", S), sup("time", S), sup("interval", S)]);
static HTTP_SETTINGS: Msg = Msg(&[
    sup("http1MaxPendingRequests", S),
    sup("http2MaxRequests", S),
    sup("maxRequestsPerConnection", S),
    ign("maxRetries", S),
    sup("idleTimeout", S),
    sup("h2UpgradePolicy", S),
    ign("useClientProtocol", S),
    ign("maxConcurrentStreams", S),
    ign("http2KeepAlive", Ty::Msg(&CONNECTION_KEEPALIVE)),
]);
static CONNECTION_KEEPALIVE: Msg = Msg(&[sup("interval", S), sup("timeout", S)]);
static OUTLIER_DETECTION: Msg = Msg(&[
    ign("consecutiveErrors", S),
    ign("splitExternalLocalOriginErrors", S),
    ign("consecutiveLocalOriginFailures", S),
    sup("consecutiveGatewayErrors", S),
    sup("consecutive5xxErrors", S),
    sup("interval", S),
    sup("baseEjectionTime", S),
    sup("maxEjectionPercent", S),
    sup("minHealthPercent", S),
    ign("outlierDetectionHttpErrorCodes", S),
]);
// `MUTUAL` is refused (model/tls.rs), so its client certificate fields are never read.
static CLIENT_TLS: Msg = Msg(&[
    sup("mode", S),
    ign("clientCertificate", S),
    ign("privateKey", S),
    sup("caCertificates", S),
    ign("credentialName", S),
    sup("subjectAltNames", S),
    sup("sni", S),
    sup("insecureSkipVerify", S),
    ign("caCrl", S),
]);
static LOCALITY_LB: Msg = Msg(&[
    sup("distribute", Ty::Msg(&LOCALITY_DISTRIBUTE)),
    sup("failover", Ty::Msg(&LOCALITY_FAILOVER)),
    sup("failoverPriority", S),
    sup("enabled", S),
]);
static LOCALITY_DISTRIBUTE: Msg = Msg(&[sup("from", S), sup("to", F)]);
static LOCALITY_FAILOVER: Msg = Msg(&[sup("from", S), sup("to", S)]);
static ZONE_AWARE_LB: Msg = Msg(&[
    sup("enabled", S),
    sup("failover", Ty::Msg(&LOCALITY_FAILOVER)),
    sup("failoverPriority", S),
    sup("minClusterSize", S),
]);
static WORKLOAD_SELECTOR: Msg = Msg(&[sup("matchLabels", F)]);

// ---- ServiceEntry ---------------------------------------------------------------------------

pub(crate) static SERVICE_ENTRY: Msg = Msg(&[
    sup("hosts", S),
    ign("addresses", S),
    sup("ports", Ty::Msg(&SERVICE_PORT)),
    ign("location", S),
    sup("resolution", S),
    sup("endpoints", Ty::Msg(&WORKLOAD_ENTRY)),
    ign("workloadSelector", Ty::Msg(&WORKLOAD_SELECTOR)),
    ign("exportTo", S),
    ign("subjectAltNames", S),
]);
static SERVICE_PORT: Msg = Msg(&[
    sup("number", S),
    sup("protocol", S),
    sup("name", S),
    sup("targetPort", S),
]);
static WORKLOAD_ENTRY: Msg = Msg(&[
    sup("address", S),
    sup("ports", F),
    sup("labels", F),
    ign("network", S),
    ign("locality", S),
    sup("weight", S),
    ign("serviceAccount", S),
]);

// ---- Gateway --------------------------------------------------------------------------------

// `selector` picks the Envoy pods of an Istio ingress; this gateway is the selected workload
// itself, so the field is accepted (and kept in the model) rather than reported.
pub(crate) static GATEWAY: Msg = Msg(&[sup("servers", Ty::Msg(&SERVER)), sup("selector", F)]);
static SERVER: Msg = Msg(&[
    sup("port", Ty::Msg(&GATEWAY_PORT)),
    ign("bind", S),
    sup("hosts", S),
    sup("tls", Ty::Msg(&SERVER_TLS)),
    ign("defaultEndpoint", S),
    sup("name", S),
]);
static GATEWAY_PORT: Msg = Msg(&[
    sup("number", S),
    sup("protocol", S),
    sup("name", S),
    ign("targetPort", S),
]);
static SERVER_TLS: Msg = Msg(&[
    sup("httpsRedirect", S),
    sup("mode", S),
    sup("serverCertificate", S),
    sup("privateKey", S),
    sup("caCertificates", S),
    ign("caCrl", S),
    sup("credentialName", S),
    sup("credentialNames", S),
    ign("caCertCredentialName", S),
    sup("tlsCertificates", Ty::Msg(&TLS_CERTIFICATE)),
    sup("subjectAltNames", S),
    ign("verifyCertificateSpki", S),
    ign("verifyCertificateHash", S),
    sup("minProtocolVersion", S),
    sup("maxProtocolVersion", S),
    sup("cipherSuites", S),
    ign("insecureSkipVerify", S),
]);
static TLS_CERTIFICATE: Msg = Msg(&[
    sup("serverCertificate", S),
    sup("privateKey", S),
    sup("caCertificates", S),
]);
