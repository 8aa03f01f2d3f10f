//! The three load shapes, as goose scenarios of one transaction: `GET /ping` with `x-user`.
//!
//! Each call's answer is read for the two headers sticky-svc sends, `x-served-by` (the
//! replica) and `x-cache` (`hit` or `miss`), and recorded in the run's [`Ledger`] under the
//! call's key. An answer without them counts as a failed request, in goose's metrics too.
//!
//! Persistent sessions (docs/sessions.md): a user keeps the last `x-session` the gateway gave it
//! and sends it back with its next calls, as a client of such a host must; the cookie form needs
//! nothing here (goose's client keeps cookies). Against a host without sessions no answer carries
//! one, and nothing is sent.
//!
//! Third in the crate's line of modules: it may import `config` and `ledger`, and may not
//! import `summary`, `verdict` or `runner`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use goose::prelude::{
    GooseError, GooseMethod, GooseRequest, GooseUser, Transaction, TransactionFunction,
    TransactionResult,
};
use reqwest::Response;

use crate::config::{Config, Scenario};
use crate::ledger::{Cache, CallError, Ledger};

/// The header naming the user, the key the gateway hashes on.
pub const X_USER: &str = "x-user";
/// The header naming the replica that answered.
pub const X_SERVED_BY: &str = "x-served-by";
/// `hit` or `miss`.
pub const X_CACHE: &str = "x-cache";
/// The persistent-session header of the labelled config (`k8s/sessions/`).
pub const X_SESSION: &str = "x-session";

/// A goose user's persistent session: the last value the gateway gave it.
#[derive(Clone)]
struct SessionValue(String);

/// What every goose user of a run shares.
struct Plan {
    scenario: Scenario,
    key_prefix: String,
    /// Makes `cold-start` keys unique across runs against the same, still warm, stack.
    run_id: String,
    ledger: Arc<Ledger>,
    /// `--ca-cert`: the users' clients, by user index; empty: goose's own.
    clients: Vec<reqwest::Client>,
}

/// The goose scenario for `config`, recording into `ledger`. Non-empty `clients` replace the
/// users' own (one each, by user index) before their first call.
pub fn goose_scenario(
    config: &Config,
    run_id: &str,
    ledger: Arc<Ledger>,
    clients: Vec<reqwest::Client>,
) -> Result<goose::goose::Scenario, GooseError> {
    let plan = Arc::new(Plan {
        scenario: config.scenario,
        key_prefix: config.key_prefix.clone(),
        run_id: run_id.to_owned(),
        ledger,
        clients,
    });
    let install = !plan.clients.is_empty();
    let for_start = Arc::clone(&plan);
    let function: TransactionFunction = Arc::new(move |user| {
        let plan = Arc::clone(&plan);
        Box::pin(async move { ping(user, &plan).await })
    });
    let mut scenario = goose::goose::Scenario::new(config.scenario.as_str())
        .register_transaction(Transaction::new(function).set_name("ping"));
    if install {
        // An assignment, which cannot fail: no user ever calls with goose's own client.
        let install: TransactionFunction = Arc::new(move |user| {
            let clients = &for_start.clients;
            user.client = clients[user.weighted_users_index % clients.len()].clone();
            Box::pin(async { Ok(()) })
        });
        scenario = scenario
            .register_transaction(Transaction::new(install).set_name("client").set_on_start());
    }
    // cold-start is paced by goose's request throttle instead.
    if config.scenario == Scenario::ColdStart || config.pause.is_zero() {
        Ok(scenario)
    } else {
        scenario.set_wait_time(config.pause, config.pause)
    }
}

async fn ping(user: &mut GooseUser, plan: &Plan) -> TransactionResult {
    let (id, key) = match plan.scenario {
        Scenario::Sticky | Scenario::Rebalance | Scenario::Chaos => {
            let index = user.weighted_users_index;
            (index as u64, format!("{}-{index}", plan.key_prefix))
        }
        Scenario::ColdStart => {
            let id = plan.ledger.fresh_key();
            (id, format!("{}-cold-{}-{id}", plan.key_prefix, plan.run_id))
        }
    };
    let mut builder = user
        .get_request_builder(&GooseMethod::Get, "/ping")?
        .header(X_USER, key);
    if let Some(SessionValue(value)) = user.get_session_data::<SessionValue>() {
        builder = builder.header(X_SESSION, value.as_str());
    }
    let request = GooseRequest::builder()
        .name("GET /ping")
        .set_request_builder(builder)
        .build();
    let sent = SystemTime::now();
    let mut goose = user.request(request).await?;
    // Goose's own time to first byte, in microseconds: the same clock as its reports.
    let latency = Duration::from_micros(goose.request.response_time_micros());
    let answer = match goose.response {
        Ok(response) => {
            if let Some(value) = response
                .headers()
                .get(X_SESSION)
                .and_then(|v| v.to_str().ok())
            {
                user.set_session_data(SessionValue(value.to_owned()));
            }
            read(response).await
        }
        Err(err) => Err(classify(&err)),
    };
    match answer {
        Ok((host, cache)) => {
            plan.ledger.served(id, &host, cache, latency, sent);
            Ok(())
        }
        Err(error) => {
            plan.ledger.failed(id, error, latency, sent);
            if goose.request.success {
                // A 2xx goose counted as a success, but it lacks sticky-svc's headers.
                return user.set_failure(&error.to_string(), &mut goose.request, None, None);
            }
            Ok(())
        }
    }
}

/// The serving host and cache outcome of an answer; the body is read to the end so the
/// connection can be reused, as a real client's would.
async fn read(response: Response) -> Result<(String, Cache), CallError> {
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let host = header(X_SERVED_BY);
    let cache = header(X_CACHE);
    response.bytes().await.map_err(|err| classify(&err))?;
    if !status.is_success() {
        return Err(CallError::Status(status.as_u16()));
    }
    let host = host
        .filter(|host| !host.is_empty())
        .ok_or(CallError::NoServedBy)?;
    let cache = match cache.as_deref() {
        Some("hit") => Cache::Hit,
        Some("miss") => Cache::Miss,
        _ => return Err(CallError::NoCacheHeader),
    };
    Ok((host, cache))
}

fn classify(err: &reqwest::Error) -> CallError {
    if err.is_timeout() {
        CallError::Timeout
    } else if err.is_connect() {
        CallError::Connect
    } else {
        CallError::Transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> Response {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Response::from(builder.body("Call was processed by host a\n").unwrap())
    }

    #[tokio::test]
    async fn reads_the_host_and_the_cache_outcome() {
        let hit = answer(200, &[(X_SERVED_BY, "svc-0"), (X_CACHE, "hit")]);
        assert_eq!(read(hit).await, Ok(("svc-0".to_owned(), Cache::Hit)));
        let miss = answer(200, &[(X_SERVED_BY, "svc-1"), (X_CACHE, "miss")]);
        assert_eq!(read(miss).await, Ok(("svc-1".to_owned(), Cache::Miss)));
    }

    #[tokio::test]
    async fn an_answer_that_is_not_from_sticky_svc_is_an_error() {
        // A proxy's own error page, even with the replica's headers, is a failed call.
        let refused = answer(503, &[(X_SERVED_BY, "svc-0")]);
        assert_eq!(read(refused).await, Err(CallError::Status(503)));
        // Some other service answering 200 on /ping.
        assert_eq!(read(answer(200, &[])).await, Err(CallError::NoServedBy));
        let blank = answer(200, &[(X_SERVED_BY, ""), (X_CACHE, "hit")]);
        assert_eq!(read(blank).await, Err(CallError::NoServedBy));
        let stale = answer(200, &[(X_SERVED_BY, "svc-0"), (X_CACHE, "stale")]);
        assert_eq!(read(stale).await, Err(CallError::NoCacheHeader));
    }
}
