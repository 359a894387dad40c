//! A private Kafka broker for fault tests: one KRaft node (broker + controller) on free
//! loopback ports with its own temporary data directory, run from the jars the test bed
//! caches (`tests/testbed/kafka.sh install`). A test can stop "the" broker and start it
//! again on the same address and data without disturbing the shared test-bed broker other
//! tests use.
//!
//! - [`PrivateKafka::start`] formats the data dir, starts the JVM (small heap, quick
//!   start) and waits until the broker answers a metadata request.
//! - [`PrivateKafka::stop`] kills it (SIGKILL: a crash, as a fault) and waits until its
//!   port is closed; [`PrivateKafka::start_again`] starts it on the same ports and data
//!   dir, so clients reconnect to the same address and find their data.
//! - Dropping it kills the broker and removes the data dir. Its log goes to
//!   `$TESTBED_DIR/logs/private-kafka-<port>.log` (kept), or into the data dir.
//!
//! Jars: `TESTBED_KAFKA_LIBS` of the test bed's env file, else
//! `$UNDERSTUDY_CACHE/kafka-4.3.1/libs` (`UNDERSTUDY_CACHE` defaults to
//! `~/.cache/understudy`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{Testbed, suffix};

const KAFKA_VERSION: &str = "4.3.1";
/// How long a (re)start may take before the test fails saying so.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A private single-node Kafka broker (see the module docs).
pub struct PrivateKafka {
    dir: PathBuf,
    libs: PathBuf,
    log: PathBuf,
    broker_port: u16,
    controller_port: u16,
    child: Option<Child>,
}

fn kafka_libs(tb: Option<&Testbed>) -> PathBuf {
    if let Some(libs) = tb.and_then(|t| t.get("TESTBED_KAFKA_LIBS")) {
        return PathBuf::from(libs);
    }
    let cache = std::env::var("UNDERSTUDY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            PathBuf::from(home).join(".cache/understudy")
        });
    cache.join(format!("kafka-{KAFKA_VERSION}/libs"))
}

/// Two distinct free loopback ports (held together while chosen, so they differ).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let ports = (
        a.local_addr().expect("port").port(),
        b.local_addr().expect("port").port(),
    );
    drop((a, b));
    ports
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("socket address"),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.
/// A random KRaft cluster id. Like Kafka's own `Uuid.randomUuid()`, never one that starts
/// with `-`: the storage tool's argument parser would take it for an option (seen as
/// "argument --cluster-id/-t: expected one argument", one start in 64).
fn cluster_id() -> String {
    use base64::Engine;
    loop {
        let bytes: [u8; 16] = rand::random();
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl PrivateKafka {
    /// Format a fresh data dir, start the broker and wait until it answers.
    pub async fn start() -> PrivateKafka {
        let tb = Testbed::try_load();
        let libs = kafka_libs(tb.as_ref());
        assert!(
            libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"))
                .exists(),
            "no Kafka {KAFKA_VERSION} jars in {}: run `tests/testbed/kafka.sh install` (or `make testbed`)",
            libs.display()
        );
        let (broker_port, controller_port) = free_ports();
        let dir = std::env::temp_dir().join(format!(
            "understudy-private-kafka-{}-{}",
            std::process::id(),
            suffix()
        ));
        std::fs::create_dir_all(dir.join("logs")).expect("create the private broker's data dir");
        let log = match tb.as_ref().and_then(|t| t.get("TESTBED_DIR")) {
            Some(d) if Path::new(&d).join("logs").is_dir() => {
                Path::new(&d).join(format!("logs/private-kafka-{broker_port}.log"))
            }
            _ => dir.join("kafka.log"),
        };
        let mut k = PrivateKafka {
            dir,
            libs,
            log,
            broker_port,
            controller_port,
            child: None,
        };
        k.write_properties();
        let (libs, props, id) = (k.classpath(), k.properties(), cluster_id());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("java")
                .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
                .args(["-cp", &libs, "kafka.tools.StorageTool", "format", "-t", &id])
                .arg("-c")
                .arg(props)
                .output()
        })
        .await
        .expect("format task")
        .expect("run java (kafka.tools.StorageTool format)");
        assert!(
            out.status.success(),
            "formatting the private broker's data dir failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        k.start_again().await;
        k
    }

    /// `127.0.0.1:<port>`: the same across [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// Kill the broker (SIGKILL) and wait until its port is closed.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
        let port = self.broker_port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while port_open(port) {
            assert!(
                Instant::now() < deadline,
                "the private broker's port {port} is still open 30 s after the kill"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Start the broker on the same ports and data dir and wait until it answers.
    pub async fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "the private broker is already running"
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the private broker's log");
        let err = log.try_clone().expect("log handle");
        let log4j =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/kafka/log4j2.properties");
        let child = Command::new("java")
            .args(["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC"])
            .args(["-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError"])
            .arg("-Djava.awt.headless=true")
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .args(["-cp", &self.classpath(), "kafka.Kafka"])
            .arg(self.properties())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start java (kafka.Kafka)");
        self.child = Some(child);
        let bootstrap = self.bootstrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "the private broker exited ({status}) while starting; its log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            if port_open(self.broker_port) && answers(&bootstrap).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private broker did not answer within {START_TIMEOUT:?}; its log {}:\n{}",
                self.log.display(),
                tail(&self.log, 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn classpath(&self) -> String {
        format!("{}/*", self.libs.display())
    }

    fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn write_properties(&self) {
        let (b, c) = (self.broker_port, self.controller_port);
        let text = format!(
            "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{c}
listeners=PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}
advertised.listeners=PLAINTEXT://127.0.0.1:{b}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={logs}
num.network.threads=2
num.io.threads=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
",
            logs = self.dir.join("logs").display()
        );
        std::fs::write(self.properties(), text).expect("write the private broker's properties");
    }
}

/// The broker answers a metadata request with itself in it.
async fn answers(bootstrap: &str) -> bool {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let Ok(c) = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create::<BaseConsumer>()
        else {
            return false;
        };
        c.fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|md| !md.brokers().is_empty())
    })
    .await
    .unwrap_or(false)
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
