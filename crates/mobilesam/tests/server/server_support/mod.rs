//! Shared helpers for the `server_*` tests: the real
//! `mobilesam serve` on a loopback port (plain or TLS), a tonic client, a `Segment` stream,
//! metrics scrapes and the server's resident memory.
//!
//! Weights are the seeded random weights of `tests/fixtures/weights_manifest.json`; images
//! are small PNGs made here.
#![allow(dead_code)]

pub mod pki;
pub mod redis;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_proto::v1::segment_response::Response as Resp;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Streaming;

/// Longest wait for one answer (an encode on a busy 2-core CI machine included).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for the server to start and load the model.
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

// The workspace root, this binary's scratch directory, fresh directories under it and the
// seeded weights written once as a `.safetensors` file: the CLI tests' helpers, which this
// binary compiles too.
pub use crate::cli_support::{
    checkpoint, scratch, seeded_checkpoint as seeded, temp_dir, workspace,
};

/// A `width` x `height` RGB image: a gradient with a bright rectangle (`variant` moves it).
pub fn rgb(width: u32, height: u32, variant: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let (x0, y0) = (width / 4 + variant * 3, height / 4);
        if (x0..x0 + width / 2).contains(&x) && (y0..y0 + height / 2).contains(&y) {
            image::Rgb([240, 220, 40])
        } else {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, (90 + variant * 40) as u8])
        }
    })
}

/// [`rgb`] as PNG bytes.
pub fn png(width: u32, height: u32, variant: u32) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(rgb(width, height, variant))
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode png");
    bytes.into_inner()
}

/// How a client reaches a TLS server: the CA to trust, and a client certificate for mTLS.
#[derive(Clone)]
pub struct ClientTls {
    /// CA certificate(s), PEM.
    pub ca_pem: String,
    /// Client certificate and key, PEM.
    pub identity: Option<(String, String)>,
}

impl ClientTls {
    fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }
}

/// How to start a server.
#[derive(Default)]
pub struct Launch<'a> {
    /// Flags after `serve --checkpoint ... --addr ... --metrics-addr ...`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(&'a str, String)>,
    /// How the tests' own clients (health polling included) connect.
    pub tls: Option<ClientTls>,
    /// `--log-format` (JSON unless set: the tests read the listeners' addresses from it).
    pub log_format: Option<&'a str>,
    /// `--checkpoint` (the seeded MobileSAM weights unless set).
    pub checkpoint: Option<std::path::PathBuf>,
}

impl<'a> Launch<'a> {
    /// A launch with these flags.
    pub fn args(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    /// Logs in this `--log-format` instead of JSON.
    pub fn log_format(mut self, format: &'a str) -> Self {
        self.log_format = Some(format);
        self
    }

    /// Serves this checkpoint instead of the seeded MobileSAM weights.
    pub fn checkpoint(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Connects the tests' clients over TLS.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The `mobilesam serve` command, MOBILESAM_* variables of the caller removed.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mobilesam"));
        command
            .arg("serve")
            .arg("--checkpoint")
            .arg(self.checkpoint.as_deref().unwrap_or(checkpoint()))
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(["--log-format", self.log_format.unwrap_or("json")])
            .args(&self.args);
        if !self.args.iter().any(|a| a == "--workers") {
            command.args(["--workers", "1"]);
        }
        for (key, _) in std::env::vars() {
            if key.starts_with("MOBILESAM_") {
                command.env_remove(key);
            }
        }
        command.env("RUST_LOG", "info");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }
}

/// Runs `mobilesam serve` expecting it to refuse to start: asserts exit code 1, no panic
/// and a one-line `error: ...` on stderr (after JSON log lines) containing `expected`.
pub fn start_failure(launch: &Launch<'_>, expected: &str) -> String {
    let output = launch
        .command()
        .stdin(Stdio::null())
        .output()
        .expect("run mobilesam serve");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let plain: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim_start().starts_with('{'))
        .collect();
    assert_eq!(plain.len(), 1, "one error line: {stderr}");
    assert!(plain[0].starts_with("error: "), "{stderr}");
    assert!(
        plain[0].contains(expected),
        "{:?} lacks {expected:?}",
        plain[0]
    );
    plain[0].to_string()
}

/// A running `mobilesam serve`; killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The metrics address.
    pub metrics: SocketAddr,
    /// Every stderr line so far.
    pub logs: Arc<Mutex<Vec<String>>>,
    tls: Option<ClientTls>,
}

impl Server {
    /// Starts a plain server with `args` and waits until its health is SERVING.
    pub async fn start(args: &[&str]) -> Self {
        Self::launch(Launch::args(args)).await
    }

    /// Starts a server as `launch` says and waits until its health is SERVING.
    pub async fn launch(launch: Launch<'_>) -> Self {
        let mut command = launch.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
        let mut grpc = None;
        let mut metrics = None;
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
            tls: launch.tls,
        };
        server.wait_serving().await;
        server
    }

    /// Connects as the launch said (plain, or TLS with its CA and client certificate).
    pub async fn channel(&self) -> Channel {
        self.try_channel(self.tls.as_ref()).await.expect("connect")
    }

    /// Connects with `tls` (plain when `None`), returning the error instead of failing.
    pub async fn try_channel(
        &self,
        tls: Option<&ClientTls>,
    ) -> Result<Channel, tonic::transport::Error> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{}", self.grpc))
            .expect("uri")
            .connect_timeout(Duration::from_secs(30));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.config())?;
        }
        endpoint.connect().await
    }

    /// A client on a new connection.
    pub async fn client(&self) -> SegmentAnythingClient<Channel> {
        SegmentAnythingClient::new(self.channel().await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// The health status of `service` (`""` for the whole server).
    pub async fn health(&self, service: &str) -> Result<i32, tonic::Status> {
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let mut health = HealthClient::new(self.channel().await);
        health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status)
    }

    async fn wait_serving(&self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = self.health("mobilesam.v1.SegmentAnything").await;
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

    /// Resident memory of the server process (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS line");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("VmRSS value");
        kib * 1024
    }

    /// Waits until a log line contains `text`.
    pub async fn wait_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every log line so far, joined.
    pub fn log_text(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A metric's value, 0 when the server has not published it yet.
pub fn metric(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}

/// `mobilesam_requests_total{kind, code}` from a scrape (0 when absent).
pub fn requests(metrics: &HashMap<String, f64>, kind: &str, code: &str) -> f64 {
    metric(
        metrics,
        &format!("mobilesam_requests_total{{kind=\"{kind}\",code=\"{code}\"}}"),
    )
}

/// One `Segment` stream.
pub struct Stream {
    tx: Option<mpsc::Sender<v1::SegmentRequest>>,
    rx: Streaming<v1::SegmentResponse>,
}

impl Stream {
    /// Opens a stream.
    pub async fn open(client: &mut SegmentAnythingClient<Channel>) -> Self {
        let (tx, requests) = mpsc::channel(256);
        let rx = client
            .segment(ReceiverStream::new(requests))
            .await
            .expect("open stream")
            .into_inner();
        Self { tx: Some(tx), rx }
    }

    /// Sends one request.
    pub async fn send(&self, request: Req) {
        self.send_raw(v1::SegmentRequest {
            request: Some(request),
        })
        .await;
    }

    /// Sends a message as is (e.g. one with no request set).
    pub async fn send_raw(&self, message: v1::SegmentRequest) {
        self.tx
            .as_ref()
            .expect("stream open")
            .send(message)
            .await
            .expect("send request");
    }

    /// Closes the request side (the client is done sending).
    pub fn close_send(&mut self) {
        self.tx = None;
    }

    /// The end of the stream: `Ok(())` or the final status.
    pub async fn end(&mut self) -> Result<(), tonic::Status> {
        let next = tokio::time::timeout(ANSWER_TIMEOUT, self.rx.message())
            .await
            .expect("end in time")?;
        assert!(next.is_none(), "unexpected answer {next:?}");
        Ok(())
    }

    /// The next answer.
    pub async fn recv(&mut self) -> Resp {
        let next = tokio::time::timeout(ANSWER_TIMEOUT, self.rx.message())
            .await
            .expect("answer in time")
            .expect("stream ok");
        next.expect("an answer").response.expect("a response")
    }

    /// The next message or the stream's final status.
    pub async fn next(&mut self) -> Result<Option<Resp>, tonic::Status> {
        let next = tokio::time::timeout(ANSWER_TIMEOUT, self.rx.message())
            .await
            .expect("answer in time")?;
        Ok(next.and_then(|m| m.response))
    }

    /// Sends an image and waits for its answer.
    pub async fn set_image(&mut self, image: Vec<u8>) -> Resp {
        self.send(image_request(image)).await;
        self.recv().await
    }

    /// Resumes a session and waits for its answer.
    pub async fn resume(&mut self, session_id: &str) -> Resp {
        self.send(Req::SetImage(v1::SetImage {
            image: Vec::new(),
            session_id: session_id.into(),
            ..Default::default()
        }))
        .await;
        self.recv().await
    }

    /// Sends a one-click prompt and waits for its answer.
    pub async fn prompt(&mut self, request_id: u64) -> Resp {
        self.ask(click(request_id)).await
    }

    /// Sends `prompt` and waits for its answer.
    pub async fn ask(&mut self, prompt: v1::Prompt) -> Resp {
        self.send(Req::Prompt(prompt)).await;
        self.recv().await
    }
}

/// A `SetImage` request carrying `image`.
pub fn image_request(image: Vec<u8>) -> Req {
    Req::SetImage(v1::SetImage {
        image,
        session_id: String::new(),
        ..Default::default()
    })
}

/// A one-point prompt.
pub fn click(request_id: u64) -> v1::Prompt {
    v1::Prompt {
        request_id,
        objects: vec![v1::ObjectPrompt {
            points: vec![v1::Point {
                x: 10.0,
                y: 12.0,
                label: 1,
            }],
            ..Default::default()
        }],
        multimask_output: false,
        return_low_res_logits: false,
        ..Default::default()
    }
}

/// The `ImageReady` of an answer.
pub fn ready(response: Resp) -> v1::ImageReady {
    match response {
        Resp::ImageReady(r) => r,
        other => panic!("expected ImageReady, got {other:?}"),
    }
}

/// The `Masks` of an answer.
pub fn masks(response: Resp) -> v1::Masks {
    match response {
        Resp::Masks(m) => m,
        other => panic!("expected Masks, got {other:?}"),
    }
}

/// The `Error` of an answer.
pub fn error(response: Resp) -> v1::Error {
    match response {
        Resp::Error(e) => e,
        other => panic!("expected Error, got {other:?}"),
    }
}
