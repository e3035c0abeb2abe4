//! Kafka helpers for tests: a node's topic set, reading a topic to its end.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Topic names of one test node, unique per test.
#[derive(Clone, Debug)]
pub struct TopicSet {
    pub input: String,
    pub changelog: String,
    pub dead_letter: String,
    pub schemas: String,
    pub settings: String,
}

impl TopicSet {
    pub fn unique(name: &str) -> TopicSet {
        let base = crate::unique(name);
        TopicSet {
            input: format!("{base}-alerts"),
            changelog: format!("{base}-changelog"),
            dead_letter: format!("{base}-dlq"),
            schemas: format!("{base}-schemas"),
            settings: format!("{base}-settings"),
        }
    }

    /// Environment for `lightkeeper serve` using these topics.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LIGHTKEEPER_TOPICS__INPUT", self.input.clone()),
            ("LIGHTKEEPER_TOPICS__CHANGELOG", self.changelog.clone()),
            ("LIGHTKEEPER_TOPICS__DEAD_LETTER", self.dead_letter.clone()),
            ("LIGHTKEEPER_TOPICS__SCHEMAS", self.schemas.clone()),
            ("LIGHTKEEPER_TOPICS__SETTINGS", self.settings.clone()),
        ]
    }
}

/// A topic config value as the broker reports it.
pub fn topic_config(bootstrap: &str, topic: &str, name: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let res =
        futures::executor::block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()))
            .expect("describe configs");
    let config = res.into_iter().next()?.ok()?;
    config.get(name).and_then(|e| e.value.clone())
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads every partition of `topic` from the start until `expected` records were seen or the
/// timeout passes; returns what was read.
pub fn read_topic(bootstrap: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

/// The nisshi broker binary: `NISSHI_BIN` (set by `cargo xtask test`), else
/// `$HOME/.local/bin/nisshi`, where `cargo xtask` installs it.
pub fn nisshi_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("NISSHI_BIN") {
        return p.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = std::path::Path::new(&home).join(".local/bin/nisshi");
    assert!(
        p.exists(),
        "no nisshi broker at {}: run the tests with `cargo xtask test`, which installs it",
        p.display()
    );
    p
}

/// A nisshi broker of a test's own (memory engine), killed on drop: plaintext
/// ([`OwnBroker::start`], for a test that pauses it — an outage — without disturbing the shared
/// one) or speaking only TLS ([`OwnBroker::start_tls`]).
pub struct OwnBroker {
    pub bootstrap: String,
    child: std::process::Child,
}

impl OwnBroker {
    /// A plaintext broker, once a client gets metadata from it.
    pub fn start(log: &std::path::Path) -> OwnBroker {
        OwnBroker::spawn(log, "memory://own/", &[], |bootstrap| {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", bootstrap);
            c
        })
    }

    /// A broker whose listener speaks only TLS with `ca`'s server certificate, once a client
    /// trusting the CA gets metadata from it.
    pub fn start_tls(ca: &crate::tls::TestCa, log: &std::path::Path) -> OwnBroker {
        let tls = [std::ffi::OsStr::new("--cert"), ca.cert_pem.as_os_str(), "--key".as_ref(), ca.key_pem.as_os_str()];
        OwnBroker::spawn(log, "memory://tls/", &tls, |bootstrap| tls_config(bootstrap, ca))
    }

    fn spawn(
        log: &std::path::Path,
        engine: &str,
        extra: &[&std::ffi::OsStr],
        client: impl Fn(&str) -> ClientConfig,
    ) -> OwnBroker {
        let port = crate::cluster::free_port();
        let child = spawn_nisshi(port, engine, extra, log);
        let broker = OwnBroker { bootstrap: format!("127.0.0.1:{port}"), child };
        wait_for_metadata(&client(&broker.bootstrap), log);
        broker
    }

    /// A client configuration for a TLS broker: SSL, trusting the test CA.
    pub fn client_config(&self, ca: &crate::tls::TestCa) -> ClientConfig {
        tls_config(&self.bootstrap, ca)
    }

    /// Sends `sig` (`libc::SIGSTOP`: the broker hangs, connections stay open; `libc::SIGCONT`).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of a child this struct owns and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed: {}", std::io::Error::last_os_error());
    }
}

/// Starts nisshi on 127.0.0.1:`port` with `engine`, logging to `log` (appended: a restarted
/// broker keeps one log).
fn spawn_nisshi(port: u16, engine: &str, extra: &[&std::ffi::OsStr], log: &std::path::Path) -> std::process::Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("broker log");
    std::process::Command::new(nisshi_binary())
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", engine])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting nisshi")
}

/// Waits (30 s at most) until a client configured by `config` gets metadata: the broker is up.
fn wait_for_metadata(config: &ClientConfig, log: &std::path::Path) {
    let c: BaseConsumer = config.clone().set("group.id", "probe").create().expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.fetch_metadata(None, Duration::from_secs(2)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the broker did not answer: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A nisshi broker on the durable PostgreSQL engine (its own [`OwnPostgres`]), which a test may
/// kill and start again on the same address without losing a record: the broker restarts of
/// the chaos soak and the durable outage test.
pub struct DurableBroker {
    pub bootstrap: String,
    port: u16,
    log: std::path::PathBuf,
    child: Option<std::process::Child>,
    // Dropped after the broker (fields drop in order): the broker's storage outlives it.
    pg: crate::postgres::OwnPostgres,
}

impl DurableBroker {
    /// Starts PostgreSQL, then the broker on it; returns once a client gets metadata.
    pub fn start(log: &std::path::Path) -> anyhow::Result<DurableBroker> {
        let pg = crate::postgres::OwnPostgres::start()?;
        let port = crate::cluster::free_port();
        let mut b =
            DurableBroker { bootstrap: format!("127.0.0.1:{port}"), port, log: log.to_owned(), child: None, pg };
        b.restart();
        Ok(b)
    }

    /// Whether the broker process is running (not killed, or started again).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: the broker dies with connections open and requests in flight, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`libc::SIGSTOP`) or SIGCONT to the running broker.
    pub fn signal(&self, sig: libc::c_int) {
        let child = self.child.as_ref().expect("the broker is running");
        // SAFETY: kill(2) with the pid of a child this struct owns and has not reaped.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed: {}", std::io::Error::last_os_error());
    }

    /// Starts the broker (again) on its address and storage; returns once it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_nisshi(self.port, &self.pg.url, &[], &self.log));
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        wait_for_metadata(&c, &self.log);
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tls_config(bootstrap: &str, ca: &crate::tls::TestCa) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", ca.ca_pem.display().to_string());
    c
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
