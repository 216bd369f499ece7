use super::*;

fn args(line: &[&str]) -> Result<ServerArgs, clap::Error> {
    ServerArgs::try_parse_from(std::iter::once("achat-server").chain(line.iter().copied()))
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    for bad in ["", "s", "ten", "-1s", "1h", "5 m"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn defaults_match_the_documented_ones() {
    let config = args(&[]).unwrap().config().unwrap();
    // The library's default keeps no file; the binary's is in its
    // working directory.
    assert_eq!(
        config,
        Config {
            accounts: AccountsConfig {
                store: AccountsStore::File(DEFAULT_ACCOUNTS_FILE.into()),
                ..AccountsConfig::default()
            },
            ..Config::default()
        }
    );
    let off = args(&["--accounts", "off"]).unwrap().config().unwrap();
    assert_eq!(off.accounts.store, AccountsStore::Off);
    assert_eq!(args(&[]).unwrap().bind, "127.0.0.1:8080");
}

#[test]
fn every_flag() {
    let a = args(&[
        "--bind",
        "0.0.0.0:9",
        "--workers",
        "3",
        "--max-connections",
        "10",
        "--max-connections-per-ip",
        "0",
        "--max-line-bytes",
        "100",
        "--max-outbox-bytes",
        "1000",
        "--max-total-outbox-bytes",
        "5000",
        "--login-timeout",
        "2s",
        "--shutdown-grace",
        "250ms",
        "--broker-sched",
        "normal",
        "--accounts",
        "/var/lib/achat/a.db",
        "--login-burst",
        "5",
        "--login-rate",
        "2",
    ])
    .unwrap();
    let c = a.config().unwrap();
    assert_eq!(a.bind, "0.0.0.0:9");
    assert_eq!(
        c,
        Config {
            workers: 3,
            allowed_origins: Vec::new(),
            max_connections: 10,
            max_connections_per_ip: 0,
            max_line_bytes: 100,
            max_outbox_bytes: 1000,
            max_total_outbox_bytes: 5000,
            login_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_millis(250),
            broker_sched: BrokerSched::Normal,
            cluster: None,
            accounts: AccountsConfig {
                store: AccountsStore::File("/var/lib/achat/a.db".into()),
                ..AccountsConfig::default()
            },
            login_rate: RatePolicy {
                burst: 5,
                per_second: 2,
            },
        }
    );
    let clustered = args(&[
        "--cluster",
        "nats://127.0.0.1:4223,nats://127.0.0.1:4224",
        "--cluster-name",
        "team",
        "--node-id",
        "n-1",
    ])
    .unwrap()
    .config()
    .unwrap();
    assert_eq!(
        clustered.cluster,
        Some(ClusterConfig {
            urls: "nats://127.0.0.1:4223,nats://127.0.0.1:4224".into(),
            cluster_name: "team".into(),
            node_id: "n-1".into(),
            timing: Timing::default(),
        })
    );
    let random = args(&["--cluster", "nats://x"]).unwrap().config().unwrap();
    assert_eq!(random.cluster.map(|c| c.node_id.len()), Some(8));
}

#[test]
fn tls_takes_all_three_flags_and_bind_off_needs_it() {
    let listen = |line: &[&str]| args(line).unwrap().listen();
    assert_eq!(
        listen(&[]),
        Ok(ListenConfig {
            plain: Some("127.0.0.1:8080".into()),
            tls: None,
            http: Some("127.0.0.1:8081".into()),
        })
    );
    assert_eq!(listen(&["--http", "off"]).unwrap().http, None);
    let tls = [
        "--tls-bind",
        "[::]:6697",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
    ];
    let both = listen(&tls).unwrap();
    assert_eq!(
        both.tls,
        Some(TlsListen {
            bind: "[::]:6697".into(),
            cert: "c.pem".into(),
            key: "k.pem".into(),
        })
    );
    let only_tls = listen(&[&tls[..], &["--bind", "off"]].concat()).unwrap();
    assert_eq!(only_tls.plain, None);
    assert_eq!(
        listen(&tls[..4]),
        Err(ConfigError::TlsIncomplete {
            missing: "--tls-key"
        })
    );
    assert_eq!(
        listen(&tls[2..]),
        Err(ConfigError::TlsIncomplete {
            missing: "--tls-bind"
        })
    );
    assert_eq!(listen(&["--bind", "off"]), Err(ConfigError::NoListener));
    let message = listen(&tls[..2]).unwrap_err().to_string();
    assert!(message.contains("--tls-cert is missing"), "{message}");
}

#[test]
fn nonsense_is_refused() {
    assert!(args(&["--workers", "0"]).is_err());
    assert!(args(&["--max-line-bytes", "0"]).is_err());
    assert!(args(&["--login-timeout", "soon"]).is_err());
    assert!(
        args(&["--node-id", "n1"]).is_err(),
        "--node-id needs --cluster"
    );
    let bad_id = args(&["--cluster", "nats://x", "--node-id", "a.b"]).unwrap();
    assert!(matches!(bad_id.config(), Err(ConfigError::BadId { .. })));
    let small = args(&["--max-line-bytes", "4096", "--max-outbox-bytes", "4000"]).unwrap();
    assert!(matches!(
        small.config(),
        Err(ConfigError::OutboxTooSmall { .. })
    ));
}

#[test]
fn allowed_origins_are_checked_and_kept_in_one_spelling() {
    let config = args(&[
        "--allowed-origin",
        "https://Chat.Example.com/",
        "--allowed-origin",
        "http://localhost:3000",
    ])
    .unwrap()
    .config()
    .unwrap();
    assert_eq!(
        config.allowed_origins,
        vec!["https://chat.example.com", "http://localhost:3000"]
    );
    let bad = args(&["--allowed-origin", "chat.example.com"]).unwrap();
    assert!(matches!(bad.config(), Err(ConfigError::BadOrigin { .. })));
}
