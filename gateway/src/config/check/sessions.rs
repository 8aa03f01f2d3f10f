//! Persistent sessions: which hosts have them, how their value travels, and a host asked for
//! two different ways.

use std::collections::BTreeMap;

use super::finding;
use crate::config::diagnostic::{Diagnostic, Severity};
use crate::config::model::{Carrier, Config, Meta, SessionPolicy};

/// Every host's persistent sessions, said as info; a host given different policies by two
/// resources, a warning (the first read wins).
pub(super) fn check(config: &Config, out: &mut Vec<Diagnostic>) {
    let sources =
        config
            .service_entries
            .iter()
            .filter_map(|se| Some((&se.meta, se.session.as_ref()?, se.hosts.clone())))
            .chain(config.kubernetes_services.iter().filter_map(|svc| {
                Some((&svc.meta, svc.session.as_ref()?, vec![svc.host.clone()]))
            }));
    let mut first: BTreeMap<String, (&Meta, &SessionPolicy)> = BTreeMap::new();
    for (meta, policy, hosts) in sources {
        let at = format!("metadata.labels.{}", policy.label());
        for host in hosts {
            if let Some((other, earlier)) = first.get(&host) {
                if *earlier != policy {
                    let message = format!(
                        "{host} already has persistent sessions from {} ({}); this one is ignored",
                        other.resource(),
                        describe(earlier)
                    );
                    out.push(finding(Severity::Warning, meta, &at, message));
                }
                continue;
            }
            first.insert(host.clone(), (meta, policy));
            let message = format!(
                "persistent sessions for {host}: {}; a request carrying a valid session goes to \
                 its endpoint while that endpoint is in the cluster and not ejected, any other is \
                 placed as the DestinationRule says and given a session",
                describe(policy)
            );
            out.push(finding(Severity::Info, meta, &at, message));
        }
    }
}

/// How the session travels and when it ends.
fn describe(policy: &SessionPolicy) -> String {
    let carrier = match &policy.carrier {
        Carrier::Cookie {
            name,
            path,
            permanent,
        } => format!(
            "cookie {name} (Path={path}, {})",
            if *permanent {
                "kept until the absolute timeout"
            } else {
                "a browser-session cookie"
            }
        ),
        Carrier::Header(name) => format!("header {name}"),
    };
    let timeout = |t: Option<std::time::Duration>| match t {
        None => "the gateway's default".to_owned(),
        Some(t) if t.is_zero() => "none".to_owned(),
        Some(t) => humantime::format_duration(t).to_string(),
    };
    format!(
        "{carrier}, idle timeout {}, absolute timeout {}",
        timeout(policy.idle_timeout),
        timeout(policy.absolute_timeout)
    )
}
