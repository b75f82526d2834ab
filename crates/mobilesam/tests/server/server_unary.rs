//! End to end: the unary session RPCs (SetImage, Predict, CloseSession) and gRPC-web on
//! the real `mobilesam serve`, on a loopback port, with seeded weights.
//!
//! A tonic client drives the unary API and a `Segment` stream side by side (sessions move
//! between them); a raw HTTP/1.1 client sends gRPC-web frames and CORS preflights, as a
//! browser does.

use crate::server_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient;
use prost::Message;
use server_support::{masks, ready, requests, workspace, Server, Stream};
use tonic::transport::Channel;
use tonic::Code;

/// The allowed cross-origin page in the CORS test.
const ALLOWED_ORIGIN: &str = "http://annotator.example:8080";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace().join("tests/fixtures/images").join(name)).expect("read fixture")
}

fn foreground(x: f32, y: f32) -> v1::Prompt {
    v1::Prompt {
        request_id: 7,
        objects: vec![v1::ObjectPrompt {
            points: vec![v1::Point { x, y, label: 1 }],
            r#box: None,
            mask_input: Vec::new(),
            ..Default::default()
        }],
        multimask_output: true,
        return_low_res_logits: true,
        ..Default::default()
    }
}

fn predict(session_id: &str, prompt: v1::Prompt) -> v1::PredictRequest {
    v1::PredictRequest {
        session_id: session_id.into(),
        prompt: Some(prompt),
    }
}

/// One prompt on a `Segment` stream that first resumes `session_id`.
async fn stream_resume_and_prompt(
    client: &mut SegmentAnythingClient<Channel>,
    session_id: &str,
    prompt: v1::Prompt,
) -> (v1::ImageReady, v1::Masks) {
    let mut stream = Stream::open(client).await;
    let ready = ready(stream.resume(session_id).await);
    (ready, masks(stream.ask(prompt).await))
}

/// Opens a session on a stream (with an image) and returns its id.
async fn stream_open(client: &mut SegmentAnythingClient<Channel>, image: Vec<u8>) -> String {
    let mut stream = Stream::open(client).await;
    ready(stream.set_image(image).await).session_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_sessions_move_between_unary_and_stream_and_close() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;

    // A new session from an image.
    let ready = client
        .set_image(v1::SetImage {
            image: fixture("chelsea.png"),
            session_id: String::new(),
            ..Default::default()
        })
        .await
        .expect("SetImage")
        .into_inner();
    assert_eq!((ready.width, ready.height), (451, 300));
    assert!(ready.encode_ms > 0.0);
    let id = ready.session_id.clone();
    assert!(!id.is_empty());

    // Predict answers masks; the same prompt on a stream resuming the session gives the
    // same masks (one store, one model).
    let unary = client
        .predict(predict(&id, foreground(200.0, 150.0)))
        .await
        .expect("Predict")
        .into_inner();
    assert_eq!(unary.request_id, 7);
    assert_eq!(unary.objects.len(), 1);
    assert_eq!(unary.objects[0].masks.len(), 3);
    assert!(unary.objects[0]
        .masks
        .iter()
        .all(|m| m.low_res_logits.len() == 256 * 256 * 4));
    let (resumed, streamed) =
        stream_resume_and_prompt(&mut client, &id, foreground(200.0, 150.0)).await;
    assert_eq!(resumed.session_id, id);
    assert_eq!(resumed.encode_ms, 0.0);
    let rles = |m: &v1::Masks| -> Vec<(u64, Option<v1::Rle>)> {
        m.objects[0]
            .masks
            .iter()
            .map(|m| (m.area, m.rle.clone()))
            .collect()
    };
    assert_eq!(rles(&unary), rles(&streamed));

    // Resume without the image: encode_ms 0 and the same size.
    let again = client
        .set_image(v1::SetImage {
            image: Vec::new(),
            session_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(
        (again.session_id.as_str(), again.encode_ms),
        (id.as_str(), 0.0)
    );
    assert_eq!((again.width, again.height), (451, 300));

    // The next frame replaces the session's image, under the same id.
    let frame = client
        .set_image(v1::SetImage {
            image: fixture("coffee.png"),
            session_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("next frame")
        .into_inner();
    assert_eq!(frame.session_id, id);
    assert_eq!((frame.width, frame.height), (600, 400));
    let mut follow = foreground(300.0, 200.0);
    follow.objects[0].mask_input = unary.objects[0].masks[0].low_res_logits.clone();
    follow.multimask_output = false;
    let followed = client
        .predict(predict(&id, follow))
        .await
        .expect("Predict with mask_input")
        .into_inner();
    assert_eq!(followed.objects[0].masks.len(), 1);
    assert_eq!(
        followed.objects[0].masks[0]
            .rle
            .as_ref()
            .map(|r| r.size.clone()),
        Some(vec![400, 600])
    );

    // A session opened on a stream is usable from the unary API.
    let from_stream = stream_open(&mut client, fixture("chelsea.png")).await;
    let on_unary = client
        .predict(predict(&from_stream, foreground(200.0, 150.0)))
        .await
        .expect("Predict on a stream's session")
        .into_inner();
    assert_eq!(rles(&on_unary), rles(&unary));

    // Close: the session is gone for both APIs; closing again is not an error.
    let closed = client
        .close_session(v1::CloseSessionRequest {
            session_id: id.clone(),
        })
        .await
        .expect("CloseSession")
        .into_inner();
    assert!(closed.closed);
    let gone = client
        .predict(predict(&id, foreground(1.0, 1.0)))
        .await
        .expect_err("Predict after close");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    assert!(gone.message().contains("send the image again"), "{gone:?}");
    let gone = client
        .set_image(v1::SetImage {
            image: Vec::new(),
            session_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("resume after close");
    assert_eq!(gone.code(), Code::NotFound);
    let twice = client
        .close_session(v1::CloseSessionRequest { session_id: id })
        .await
        .expect("CloseSession again")
        .into_inner();
    assert!(!twice.closed);

    // The unary calls are counted with the stream's kinds and codes.
    assert_eq!(requests(&server.scrape(), "close_session", "OK"), 2.0);
    assert_eq!(requests(&server.scrape(), "prompt", "NOT_FOUND"), 1.0);
    assert_eq!(requests(&server.scrape(), "resume", "NOT_FOUND"), 1.0);
    assert_eq!(requests(&server.scrape(), "resume", "OK"), 2.0);
    assert_eq!(requests(&server.scrape(), "prompt", "OK"), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_bad_input_gets_the_streams_codes() {
    let server = Server::start(&["--max-objects", "2", "--max-points", "3"]).await;
    let mut client = server.client().await;
    let set = |image: Vec<u8>, session_id: &str| v1::SetImage {
        image,
        session_id: session_id.into(),
        ..Default::default()
    };
    let code = |result: Result<tonic::Response<v1::ImageReady>, tonic::Status>| {
        result.expect_err("refused").code()
    };
    assert_eq!(
        code(client.set_image(set(Vec::new(), "")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(client.set_image(set(b"not an image".to_vec(), "")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .set_image(set(fixture("chelsea.png"), "bad id!"))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(client.set_image(set(Vec::new(), "never-seen")).await),
        Code::NotFound
    );

    let id = client
        .set_image(set(fixture("chelsea.png"), "my-session.1"))
        .await
        .expect("SetImage with a chosen id")
        .into_inner()
        .session_id;
    assert_eq!(id, "my-session.1");

    let object =
        |points: Vec<v1::Point>, r#box: Option<v1::Box>, mask_input: Vec<u8>| v1::ObjectPrompt {
            points,
            r#box,
            mask_input,
            ..Default::default()
        };
    let p = |x: f32, y: f32, label: i32| v1::Point { x, y, label };
    let with = |objects: Vec<v1::ObjectPrompt>| v1::Prompt {
        request_id: 1,
        objects,
        multimask_output: false,
        return_low_res_logits: false,
        ..Default::default()
    };
    let cases: Vec<(&str, v1::PredictRequest, Code)> = vec![
        (
            "no session",
            predict("", foreground(1.0, 1.0)),
            Code::InvalidArgument,
        ),
        (
            "unknown session",
            predict("unknown", foreground(1.0, 1.0)),
            Code::NotFound,
        ),
        (
            "no prompt",
            v1::PredictRequest {
                session_id: id.clone(),
                prompt: None,
            },
            Code::InvalidArgument,
        ),
        (
            "no objects",
            predict(&id, with(vec![])),
            Code::InvalidArgument,
        ),
        (
            "label 5",
            predict(&id, with(vec![object(vec![p(1.0, 1.0, 5)], None, vec![])])),
            Code::InvalidArgument,
        ),
        (
            "NaN",
            predict(
                &id,
                with(vec![object(vec![p(f32::NAN, 1.0, 1)], None, vec![])]),
            ),
            Code::InvalidArgument,
        ),
        (
            "inverted box",
            predict(
                &id,
                with(vec![object(
                    vec![],
                    Some(v1::Box {
                        x1: 50.0,
                        y1: 50.0,
                        x2: 10.0,
                        y2: 10.0,
                    }),
                    vec![],
                )]),
            ),
            Code::InvalidArgument,
        ),
        (
            "empty object",
            predict(&id, with(vec![object(vec![], None, vec![])])),
            Code::InvalidArgument,
        ),
        (
            "mask_input size",
            predict(
                &id,
                with(vec![object(vec![p(1.0, 1.0, 1)], None, vec![0; 12])]),
            ),
            Code::InvalidArgument,
        ),
        (
            "too many objects",
            predict(
                &id,
                with(vec![object(vec![p(1.0, 1.0, 1)], None, vec![]); 3]),
            ),
            Code::InvalidArgument,
        ),
        (
            "too many points",
            predict(
                &id,
                with(vec![object(vec![p(1.0, 1.0, 1); 4], None, vec![])]),
            ),
            Code::InvalidArgument,
        ),
    ];
    for (name, request, expected) in cases {
        let status = client.predict(request).await.expect_err(name);
        assert_eq!(status.code(), expected, "{name}: {status:?}");
        assert!(!status.message().is_empty(), "{name}");
    }
    let bad_close = client
        .close_session(v1::CloseSessionRequest {
            session_id: "no spaces allowed".into(),
        })
        .await
        .expect_err("bad id");
    assert_eq!(bad_close.code(), Code::InvalidArgument);

    // The session and the server go on.
    let masks = client
        .predict(predict(&id, foreground(200.0, 150.0)))
        .await
        .expect("valid Predict after the refusals")
        .into_inner();
    assert_eq!(masks.objects[0].masks.len(), 3);
}

// ---------------------------------------------------------------------------------------
// gRPC-web and the page over HTTP/1.1
// ---------------------------------------------------------------------------------------

/// A raw HTTP/1.1 response.
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status_line = lines.next().expect("status line");
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A gRPC-web frame: flag byte, big-endian length, payload.
fn grpc_web_frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![flag];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Splits a gRPC-web response body into (messages, trailer text).
fn grpc_web_parse(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let mut messages = Vec::new();
    let mut trailers = String::new();
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(payload));
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

fn grpc_web_call(
    server: &Server,
    method: &str,
    request: &impl Message,
    origin: Option<&str>,
) -> HttpResponse {
    let mut headers = vec![
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("accept", "application/grpc-web+proto"),
    ];
    if let Some(origin) = origin {
        headers.push(("origin", origin));
    }
    http1(
        server.grpc,
        "POST",
        &format!("/mobilesam.v1.SegmentAnything/{method}"),
        &headers,
        &grpc_web_frame(0, &request.encode_to_vec()),
    )
}

fn preflight(server: &Server, origin: &str) -> HttpResponse {
    http1(
        server.grpc,
        "OPTIONS",
        "/mobilesam.v1.SegmentAnything/Predict",
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-grpc-web,x-user-agent",
            ),
        ],
        b"",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_over_http1_with_cors_and_the_page() {
    let server = Server::start(&["--cors-allow-origin", ALLOWED_ORIGIN]).await;

    // A preflight from the allowed origin is answered with the CORS grants.
    let allowed = preflight(&server, ALLOWED_ORIGIN);
    assert!(
        allowed.status == 200 || allowed.status == 204,
        "{}",
        allowed.status
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    let allowed_headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("x-grpc-web"), "{allowed_headers}");
    // Another origin gets no grant (the browser blocks its calls).
    let other = preflight(&server, "http://elsewhere.example");
    assert_eq!(other.header("access-control-allow-origin"), None);

    // Unary calls in gRPC-web framing over HTTP/1.1.
    let info = grpc_web_call(
        &server,
        "GetModelInfo",
        &v1::GetModelInfoRequest {},
        Some(ALLOWED_ORIGIN),
    );
    assert_eq!(info.status, 200);
    assert!(info
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/grpc-web"));
    assert_eq!(
        info.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    let (messages, trailers) = grpc_web_parse(&info.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let model = v1::ModelInfo::decode(messages[0].as_slice()).expect("ModelInfo");
    assert_eq!(model.name, "mobile_sam");

    let image = v1::SetImage {
        image: fixture("chelsea.png"),
        session_id: String::new(),
        ..Default::default()
    };
    let set = grpc_web_call(&server, "SetImage", &image, None);
    let (messages, trailers) = grpc_web_parse(&set.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let ready = v1::ImageReady::decode(messages[0].as_slice()).expect("ImageReady");
    assert_eq!((ready.width, ready.height), (451, 300));
    let masks = grpc_web_call(
        &server,
        "Predict",
        &predict(&ready.session_id, foreground(200.0, 150.0)),
        None,
    );
    let (messages, _) = grpc_web_parse(&masks.body);
    let masks = v1::Masks::decode(messages[0].as_slice()).expect("Masks");
    assert_eq!(masks.objects[0].masks.len(), 3);

    // Errors come back as gRPC-web status trailers (or headers, for an error-only answer).
    let missing = grpc_web_call(
        &server,
        "Predict",
        &predict("gone", foreground(1.0, 1.0)),
        None,
    );
    let (_, trailers) = grpc_web_parse(&missing.body);
    let status = missing
        .header("grpc-status")
        .map(str::to_string)
        .unwrap_or(trailers);
    assert!(status.contains('5'), "NOT_FOUND expected: {status}");

    // The page is served on the same port.
    let page = http1(server.grpc, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains("app.js"));
    let script = http1(server.grpc, "GET", "/app.js", &[], b"");
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/javascript"));

    // gRPC over HTTP/2 keeps working on the same port.
    let mut client = server.client().await;
    assert!(
        client
            .close_session(v1::CloseSessionRequest {
                session_id: ready.session_id,
            })
            .await
            .expect("CloseSession over HTTP/2")
            .into_inner()
            .closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_can_be_turned_off() {
    let server = Server::start(&["--web-page", "false"]).await;
    // No page: a plain HTTP/1.1 GET is refused (tonic-web answers 400 to non-gRPC-web).
    let page = http1(server.grpc, "GET", "/", &[], b"");
    assert!(matches!(page.status, 400 | 404), "{}", page.status);
    assert!(!String::from_utf8_lossy(&page.body).contains("app.js"));
    let info = grpc_web_call(&server, "GetModelInfo", &v1::GetModelInfoRequest {}, None);
    let (_, trailers) = grpc_web_parse(&info.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_carry_the_bearer_token() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mobilesam-unary");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "web-s3cret\n").expect("write token");
    let token_arg = token_file.to_string_lossy().to_string();
    let server = Server::start(&[
        "--auth-token-file",
        &token_arg,
        "--cors-allow-origin",
        ALLOWED_ORIGIN,
    ])
    .await;

    // The page and preflights need no token (a browser sends none with them).
    assert_eq!(http1(server.grpc, "GET", "/", &[], b"").status, 200);
    let allowed = preflight(&server, ALLOWED_ORIGIN);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert!(allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("authorization"));

    // A gRPC-web call without the token: UNAUTHENTICATED, in gRPC-web form.
    let refused = grpc_web_call(&server, "GetModelInfo", &v1::GetModelInfoRequest {}, None);
    assert_eq!(refused.status, 200);
    assert!(refused
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/grpc-web"));
    let (_, trailers) = grpc_web_parse(&refused.body);
    let status = refused
        .header("grpc-status")
        .map(str::to_string)
        .unwrap_or(trailers);
    assert!(status.contains("16"), "UNAUTHENTICATED expected: {status}");

    // With the token it is answered.
    let body = grpc_web_frame(0, &v1::GetModelInfoRequest {}.encode_to_vec());
    let answered = http1(
        server.grpc,
        "POST",
        "/mobilesam.v1.SegmentAnything/GetModelInfo",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("authorization", "Bearer web-s3cret"),
        ],
        &body,
    );
    let (messages, trailers) = grpc_web_parse(&answered.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    assert_eq!(
        v1::ModelInfo::decode(messages[0].as_slice())
            .expect("ModelInfo")
            .name,
        "mobile_sam"
    );
}
