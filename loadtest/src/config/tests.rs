use super::*;

fn config(flags: &[&str]) -> Result<Config, ConfigError> {
    Cli::try_parse_from(["loadtest"].iter().chain(flags))
        .unwrap()
        .into_config()
}

#[test]
fn defaults_run_sticky_with_100_users_for_30_seconds() {
    let config = config(&[]).unwrap();
    assert_eq!(config.scenario, Scenario::Sticky);
    if std::env::var_os("LOADTEST_HOST").is_none() {
        assert_eq!(config.host.as_str(), "http://localhost/");
    }
    assert_eq!(config.users, 100);
    assert_eq!(config.run_time, Duration::from_secs(30));
    assert_eq!(config.thresholds.min_stickiness, Some(100.0));
    assert_eq!(
        config.reports,
        [
            PathBuf::from("target/loadtest/report.html"),
            PathBuf::from("target/loadtest/report.json")
        ]
    );
}

#[test]
fn stickiness_is_only_required_of_the_sticky_scenario() {
    let config = config(&["-s", "rebalance", "--max-moved", "30"]).unwrap();
    assert_eq!(config.thresholds.min_stickiness, None);
    assert_eq!(config.thresholds.max_lost_caches, None);
    assert_eq!(config.thresholds.max_moved, Some(30.0));
}

#[test]
fn refuses_values_that_make_no_sense() {
    assert!(matches!(
        config(&["--host", "localhost:8080"]),
        Err(ConfigError::Host { .. })
    ));
    assert!(matches!(
        config(&["--host", "ftp://x"]),
        Err(ConfigError::Host { .. })
    ));
    assert!(matches!(
        config(&["--host", "http://x/ping"]),
        Err(ConfigError::Host { .. })
    ));
    assert_eq!(config(&["-u", "0"]).unwrap_err(), ConfigError::NoUsers);
    assert_eq!(
        config(&["-t", "1500ms"]).unwrap_err(),
        ConfigError::RunTime(Duration::from_millis(1500))
    );
    assert!(matches!(
        config(&["-r", "0"]),
        Err(ConfigError::Rate { .. })
    ));
    assert!(matches!(
        config(&["--max-moved", "120"]),
        Err(ConfigError::Percent { .. })
    ));
    assert_eq!(
        config(&["--first-call-cost", "0s"]).unwrap_err(),
        ConfigError::NoCost
    );
    assert!(matches!(
        config(&["--key-prefix", "a b"]),
        Err(ConfigError::KeyPrefix(_))
    ));
    assert_eq!(
        config(&["-s", "chaos"]).unwrap_err(),
        ConfigError::ChaosRecord
    );
    assert_eq!(
        config(&["--chaos-record", "r.json"]).unwrap_err(),
        ConfigError::ChaosRecord
    );
}

#[test]
fn chaos_judges_users_by_the_pause_window_and_outwaits_the_latency_bound() {
    let config = config(&["-s", "chaos", "--chaos-record", "r.json"]).unwrap();
    assert_eq!(config.chaos_record, Some(PathBuf::from("r.json")));
    assert_eq!(config.chaos_settle, Duration::from_secs(5));
    assert_eq!(config.thresholds.max_chaos_latency, Duration::from_secs(15));
    // Users of the paused replica move: stickiness is judged by the chaos thresholds.
    assert_eq!(config.thresholds.min_stickiness, None);
    assert_eq!(config.thresholds.max_lost_caches, None);
    // A call slower than the bound must be measured, not cut by the client's timeout.
    assert_eq!(config.timeout(), Duration::from_secs(25));
    let sticky = self::config(&["--max-chaos-latency", "60s"]).unwrap();
    assert_eq!(sticky.timeout(), Duration::from_secs(20));
}

#[test]
fn clap_refuses_unknown_scenarios_and_bad_durations() {
    assert!(Cli::try_parse_from(["loadtest", "-s", "soak"]).is_err());
    assert!(Cli::try_parse_from(["loadtest", "-t", "soon"]).is_err());
    assert!(Cli::try_parse_from(["loadtest", "--no-reports", "--report-file", "r.html"]).is_err());
}

#[test]
fn the_ca_certificate_is_kept_for_https_hosts_only() {
    let https = config(&["--host", "https://gateway:8443", "--ca-cert", "ca.crt"]).unwrap();
    assert_eq!(https.ca_cert, Some(PathBuf::from("ca.crt")));
    // The same variable may be set for a plain-http run: it has nothing to verify.
    let http = config(&["--host", "http://gateway:8080", "--ca-cert", "ca.crt"]).unwrap();
    assert_eq!(http.ca_cert, None);
}
