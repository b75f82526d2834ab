//! Security, end to end against the real `mobilesam serve` on a loopback port: TLS
//! (rustls), mutual TLS, the bearer token, startup errors for bad certificate, key and
//! token files, and the message-size limit. Certificates are made at test time (rcgen).

use crate::server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient;
use server_support::pki::{self, Authority};
use server_support::{
    image_request, masks, metric, png, ready, start_failure, ClientTls, Launch, Server, Stream,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// `GetModelInfo` on `channel`, with `token` as a bearer token when given.
async fn model_info(channel: Channel, token: Option<&str>) -> Result<v1::ModelInfo, Status> {
    let mut request = Request::new(v1::GetModelInfoRequest {});
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
        request.metadata_mut().insert("authorization", value);
    }
    SegmentAnythingClient::new(channel)
        .get_model_info(request)
        .await
        .map(|r| r.into_inner())
}

/// Connects with `tls` and calls `GetModelInfo`; either step may fail.
async fn model_info_over(
    server: &Server,
    tls: Option<&ClientTls>,
) -> Result<v1::ModelInfo, String> {
    let channel = server
        .try_channel(tls)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    tokio::time::timeout(Duration::from_secs(30), model_info(channel, None))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|status| format!("rpc: {status:?}"))
}

/// The listener speaks TLS only: a client trusting the server's CA is served (a whole
/// session included); a client trusting another CA, and a plain-text client, are not.
/// The files are given through the MOBILESAM_* environment variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_its_ca_only() {
    let dir = server_support::temp_dir();
    let ca = Authority::new("mobilesam test CA");
    let leaf = ca.server();
    let cert = pki::write(dir.path(), "server.pem", &leaf.cert_pem);
    let key = pki::write(dir.path(), "server.key", &leaf.key_pem);
    let trusted = ClientTls {
        ca_pem: ca.cert_pem.clone(),
        identity: None,
    };
    let server = Server::launch(
        Launch::default()
            .env("MOBILESAM_TLS_CERT", cert.to_str().expect("utf-8"))
            .env("MOBILESAM_TLS_KEY", key.to_str().expect("utf-8"))
            .tls(trusted.clone()),
    )
    .await;
    assert!(server.log_text().contains("TLS on the gRPC listener"));

    let info = model_info_over(&server, Some(&trusted))
        .await
        .expect("trusted client served");
    assert_eq!(info.name, "mobile_sam");
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    let image = ready(stream.set_image(png(40, 30, 0)).await);
    assert_eq!((image.width, image.height), (40, 30));
    assert_eq!(masks(stream.prompt(3).await).request_id, 3);

    let stranger = ClientTls {
        ca_pem: Authority::new("another CA").cert_pem,
        identity: None,
    };
    let refused = model_info_over(&server, Some(&stranger)).await;
    assert!(
        refused.is_err(),
        "a client trusting another CA got {refused:?}"
    );
    let plain = model_info_over(&server, None).await;
    assert!(plain.is_err(), "a plain-text client got {plain:?}");
    // The server is unharmed by the failed handshakes.
    model_info_over(&server, Some(&trusted))
        .await
        .expect("served after failed handshakes");
}

/// With `--tls-client-ca` a client must present a certificate signed by that CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_its_ca() {
    let dir = server_support::temp_dir();
    let server_ca = Authority::new("server CA");
    let client_ca = Authority::new("client CA");
    let leaf = server_ca.server();
    let cert = pki::write(dir.path(), "server.pem", &leaf.cert_pem);
    let key = pki::write(dir.path(), "server.key", &leaf.key_pem);
    let clients = pki::write(dir.path(), "clients.pem", &client_ca.cert_pem);
    let client = client_ca.client("camera-7");
    let with_cert = ClientTls {
        ca_pem: server_ca.cert_pem.clone(),
        identity: Some((client.cert_pem, client.key_pem)),
    };
    let server = Server::launch(
        Launch::args(&[
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
            "--tls-client-ca",
            clients.to_str().expect("utf-8"),
        ])
        .tls(with_cert.clone()),
    )
    .await;

    model_info_over(&server, Some(&with_cert))
        .await
        .expect("client with a certificate from the client CA served");
    let without = ClientTls {
        ca_pem: server_ca.cert_pem.clone(),
        identity: None,
    };
    let refused = model_info_over(&server, Some(&without)).await;
    assert!(
        refused.is_err(),
        "a client without a certificate got {refused:?}"
    );
    let rogue = server_ca.client("rogue");
    let wrong_issuer = ClientTls {
        ca_pem: server_ca.cert_pem.clone(),
        identity: Some((rogue.cert_pem, rogue.key_pem)),
    };
    let refused = model_info_over(&server, Some(&wrong_issuer)).await;
    assert!(
        refused.is_err(),
        "a client certificate from another CA got {refused:?}"
    );
    model_info_over(&server, Some(&with_cert))
        .await
        .expect("still serving");
}

/// Calls every `mobilesam.v1` RPC and reflection without (or with a wrong) token; returns
/// the codes.
async fn codes_without_valid_token(server: &Server, token: Option<&str>) -> Vec<(String, Code)> {
    let channel = server.channel().await;
    let auth = token.map(|t| {
        format!("Bearer {t}")
            .parse::<MetadataValue<_>>()
            .expect("header")
    });
    let mut client =
        SegmentAnythingClient::with_interceptor(channel.clone(), move |mut r: Request<()>| {
            if let Some(value) = &auth {
                r.metadata_mut().insert("authorization", value.clone());
            }
            Ok(r)
        });
    let mut codes = Vec::new();
    codes.push((
        "GetModelInfo".into(),
        code(client.get_model_info(v1::GetModelInfoRequest {}).await),
    ));
    let (tx, requests) = tokio::sync::mpsc::channel(4);
    tx.send(v1::SegmentRequest {
        request: Some(image_request(png(16, 16, 0))),
    })
    .await
    .expect("queue request");
    codes.push((
        "Segment".into(),
        code(client.segment(ReceiverStream::new(requests)).await),
    ));
    codes.push((
        "SetImage".into(),
        code(
            client
                .set_image(v1::SetImage {
                    image: png(16, 16, 0),
                    session_id: String::new(),
                    ..Default::default()
                })
                .await,
        ),
    ));
    codes.push((
        "Predict".into(),
        code(client.predict(v1::PredictRequest::default()).await),
    ));
    codes.push((
        "CloseSession".into(),
        code(
            client
                .close_session(v1::CloseSessionRequest::default())
                .await,
        ),
    ));
    codes.push((
        "GenerateMasks".into(),
        code(
            client
                .generate_masks(v1::GenerateMasksRequest::default())
                .await,
        ),
    ));
    codes.push(("reflection".into(), reflection_code(channel).await));
    codes
}

/// The code of an RPC's outcome.
fn code<T>(outcome: Result<tonic::Response<T>, Status>) -> Code {
    outcome.err().map_or(Code::Ok, |s| s.code())
}

async fn reflection_code(channel: Channel) -> Code {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let outcome = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await;
    match outcome {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().message().await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        },
    }
}

/// A gRPC-web call (HTTP/1.1) to `method` without a token, whose message carries
/// `payload_bytes` bytes: the grpc-status header of the answer. The whole body is sent
/// before the answer is read, as a browser's `fetch` does.
fn grpc_web_status(server: &Server, method: &str, payload_bytes: usize) -> Option<String> {
    let mut stream = TcpStream::connect(server.grpc).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let length = u32::try_from(payload_bytes).expect("payload fits a frame");
    let mut frame = vec![0u8];
    frame.extend_from_slice(&length.to_be_bytes());
    frame.resize(5 + payload_bytes, 0x5a);
    let head = format!(
        "POST /mobilesam.v1.SegmentAnything/{method} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        frame.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    // A refused upload must be read by the server: answering early and closing with
    // unread bytes resets the connection, and the client never sees the status.
    stream
        .write_all(&frame)
        .expect("send body: the server reset the upload");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the answer: the server reset the connection");
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    text.lines()
        .find_map(|l| l.strip_prefix("grpc-status:").map(|v| v.trim().to_string()))
}

/// With `--auth-token-file`, every `mobilesam.v1` RPC (streaming and unary) and reflection
/// answer UNAUTHENTICATED without the right token, gRPC-web included; health needs none;
/// the right token is served; the refusals are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_guards_every_rpc_but_health() {
    let dir = server_support::temp_dir();
    let token_file = pki::write(dir.path(), "token", "  s3cret-token\n");
    let server = Server::start(&["--auth-token-file", token_file.to_str().expect("utf-8")]).await;
    // Health answered without a token (the launch waited for SERVING through it).
    assert_eq!(
        server.health("").await.expect("health without token"),
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut refused = 0.0;
    for token in [None, Some("wrong"), Some("s3cret-token-but-longer")] {
        for (rpc, code) in codes_without_valid_token(&server, token).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with token {token:?}");
            refused += 1.0;
        }
    }
    assert_eq!(
        grpc_web_status(&server, "GetModelInfo", 0).as_deref(),
        Some("16"),
        "gRPC-web without a token"
    );
    refused += 1.0;
    // A browser uploading an image without the token (8 MiB: more than the socket buffers
    // hold) gets UNAUTHENTICATED too, not a reset ("Failed to fetch").
    assert_eq!(
        grpc_web_status(&server, "SetImage", 8 << 20).as_deref(),
        Some("16"),
        "gRPC-web upload without a token"
    );
    refused += 1.0;

    let info = model_info(server.channel().await, Some("s3cret-token"))
        .await
        .expect("right token served");
    assert_eq!(info.name, "mobile_sam");
    let value: MetadataValue<_> = "Bearer s3cret-token".parse().expect("header");
    let mut client = SegmentAnythingClient::with_interceptor(
        server.channel().await,
        move |mut r: Request<()>| {
            r.metadata_mut().insert("authorization", value.clone());
            Ok(r)
        },
    );
    let (tx, requests) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .segment(ReceiverStream::new(requests))
        .await
        .expect("stream with the right token")
        .into_inner();
    tx.send(v1::SegmentRequest {
        request: Some(image_request(png(24, 20, 1))),
    })
    .await
    .expect("send image");
    let answer = answers.message().await.expect("answer").expect("a message");
    let image = ready(answer.response.expect("response"));
    assert_eq!((image.width, image.height), (24, 20));

    let metrics = server.scrape();
    assert_eq!(metric(&metrics, "mobilesam_unauthenticated_total"), refused);
}

/// Unreadable or invalid certificate, key and token files stop the server at start with
/// one clear line and exit code 1.
#[test]
fn bad_security_files_stop_the_server_with_one_line() {
    let dir = server_support::temp_dir();
    let ca = Authority::new("CA");
    let leaf = ca.server();
    let other = ca.server();
    let cert = pki::write(dir.path(), "server.pem", &leaf.cert_pem);
    let key = pki::write(dir.path(), "server.key", &leaf.key_pem);
    let other_key = pki::write(dir.path(), "other.key", &other.key_pem);
    let garbage = pki::write(dir.path(), "garbage.pem", "not a certificate\n");
    let empty_token = pki::write(dir.path(), "empty-token", " \n\n");
    let spaced_token = pki::write(dir.path(), "spaced-token", "two words\n");
    let missing = dir.path().join("missing.pem");
    let p = |path: &std::path::Path| path.to_str().expect("utf-8").to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--tls-cert".into(),
                p(&missing),
                "--tls-key".into(),
                p(&key),
            ],
            "cannot read --tls-cert",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&garbage),
                "--tls-key".into(),
                p(&key),
            ],
            "holds no PEM certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&cert),
                "--tls-key".into(),
                p(&garbage),
            ],
            "holds no PEM private key",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&cert),
                "--tls-key".into(),
                p(&other_key),
            ],
            "does not fit --tls-cert",
        ),
        (
            vec!["--tls-cert".into(), p(&cert)],
            "--tls-cert needs --tls-key",
        ),
        (
            vec!["--tls-client-ca".into(), p(&cert)],
            "--tls-client-ca needs --tls-cert and --tls-key",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&cert),
                "--tls-key".into(),
                p(&key),
                "--tls-client-ca".into(),
                p(&garbage),
            ],
            "--tls-client-ca",
        ),
        (
            vec!["--auth-token-file".into(), p(&missing)],
            "cannot read --auth-token-file",
        ),
        (
            vec!["--auth-token-file".into(), p(&empty_token)],
            "is empty",
        ),
        (
            vec!["--auth-token-file".into(), p(&spaced_token)],
            "printable ASCII without spaces",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let message = start_failure(&Launch::args(&args), expected);
        assert!(!message.contains("s3cret"), "{message}");
    }
}

/// A message over `--max-message-bytes` is refused with RESOURCE_EXHAUSTED before it is
/// decoded; the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_with_resource_exhausted() {
    let server = Server::start(&["--max-message-bytes", "64KiB"]).await;
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    stream.send(image_request(vec![7u8; 100 << 10])).await;
    let status = stream.next().await.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");

    let unary = client
        .set_image(v1::SetImage {
            image: vec![7u8; 100 << 10],
            session_id: String::new(),
            ..Default::default()
        })
        .await
        .expect_err("unary refused");
    assert_eq!(unary.code(), Code::ResourceExhausted, "{unary:?}");
    assert!(unary.message().contains("65536"), "{unary:?}");

    // A browser's upload over the limit (gRPC-web on HTTP/1.1, 8 MiB: more than the socket
    // buffers hold) gets the status too, not a reset ("Failed to fetch").
    assert_eq!(
        grpc_web_status(&server, "SetImage", 8 << 20).as_deref(),
        Some("8"),
        "gRPC-web upload over the limit"
    );

    // A small image on a new stream is still served.
    let mut stream = Stream::open(&mut client).await;
    let image = ready(stream.set_image(png(20, 16, 0)).await);
    assert_eq!((image.width, image.height), (20, 16));
}
