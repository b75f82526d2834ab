//! A real `mobilesam serve` for the `server_generate` tests: started on loopback ports
//! (port 0, the bound addresses are read from its JSON log) with a given checkpoint,
//! killed when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient;
use serde_json::Value;
use tonic::transport::Channel;

/// Longest wait for the server to start and load the model.
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A running `mobilesam serve`.
pub struct Server {
    child: Child,
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The metrics address.
    pub metrics: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server with `checkpoint` and `extra` flags (`--workers 1` unless
    /// given) and waits until its health is SERVING.
    pub async fn start(checkpoint: &std::path::Path, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mobilesam"));
        command
            .arg("serve")
            .arg("--checkpoint")
            .arg(checkpoint)
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(extra)
            .args(if extra.contains(&"--workers") {
                &[][..]
            } else {
                &["--workers", "1"][..]
            })
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("MOBILESAM_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().expect("start mobilesam serve");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(json) = serde_json::from_str::<Value>(&line) {
                        let message = json["fields"]["message"].as_str().unwrap_or_default();
                        if let Some(addr) = json["fields"]["addr"].as_str() {
                            let _ = addr_tx.send((message.to_string(), addr.to_string()));
                        }
                    }
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let (mut grpc, mut metrics) = (None, None);
        let deadline = Instant::now() + START_TIMEOUT;
        while grpc.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (message, addr) = addr_rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("server did not log its addresses: {:?}", logs.lock());
            });
            let addr: SocketAddr = addr.parse().expect("socket address");
            if message.starts_with("gRPC") {
                grpc = Some(addr);
            } else if message.starts_with("metrics") {
                metrics = Some(addr);
            }
        }
        let server = Self {
            child,
            grpc: grpc.expect("grpc addr"),
            metrics: metrics.expect("metrics addr"),
            logs,
        };
        server.wait_serving().await;
        server
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// A client with large message limits.
    pub async fn client(&self) -> SegmentAnythingClient<Channel> {
        SegmentAnythingClient::new(self.channel().await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    async fn wait_serving(&self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let mut health = HealthClient::new(self.channel().await);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: "mobilesam.v1.SegmentAnything".into(),
                })
                .await
                .map(|r| r.into_inner().status);
            if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server never became SERVING: {:?}",
                self.logs.lock()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a log line contains `text`.
    pub async fn wait_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self
                .logs
                .lock()
                .expect("logs")
                .iter()
                .any(|line| line.contains(text));
            if seen {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}: {:?}",
                self.logs.lock()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /metrics`, parsed into `name{labels}` -> value.
    pub fn scrape(&self) -> HashMap<String, f64> {
        let mut stream = TcpStream::connect(self.metrics).expect("connect metrics");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("send request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read response");
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// `mobilesam_requests_total{kind, code}` from a scrape (0 when absent).
    pub fn requests(metrics: &HashMap<String, f64>, kind: &str, code: &str) -> f64 {
        let key = format!("mobilesam_requests_total{{kind=\"{kind}\",code=\"{code}\"}}");
        metrics.get(&key).copied().unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
