//! End to end: the real `mobilesam serve` on a loopback port, driven by a tonic client.
//!
//! Weights are the seeded random weights of `tests/fixtures/weights_manifest.json`; images
//! are small PNGs made here. Each test starts its own server (port 0, the port is read
//! from the JSON log) and keeps the number of image encodes small: the encoder is the
//! slow part on CPU.

use crate::server_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_proto::v1::segment_response::Response as Resp;
use serde_json::Value;
use server_support::{
    checkpoint, error, masks, png, ready, rgb, scratch, seeded, Launch, Server, Stream,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn png_file(width: u32, height: u32, variant: u32) -> PathBuf {
    let path = scratch().join(format!("image_{width}x{height}_{variant}.png"));
    let part = scratch().join(format!("image.{}.part", std::process::id()));
    std::fs::write(&part, png(width, height, variant)).expect("write png");
    std::fs::rename(&part, &path).expect("rename png");
    path
}

/// A valid PNG header that claims `width` x `height` pixels, with no real pixel data: a
/// decompression bomb must be refused from its header.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A running `mobilesam serve`; killed when dropped.
fn point(x: f32, y: f32, label: i32) -> v1::Point {
    v1::Point { x, y, label }
}

fn points(points: Vec<v1::Point>) -> v1::ObjectPrompt {
    v1::ObjectPrompt {
        points,
        r#box: None,
        mask_input: Vec::new(),
        ..Default::default()
    }
}

fn boxed(x1: f32, y1: f32, x2: f32, y2: f32) -> v1::ObjectPrompt {
    v1::ObjectPrompt {
        points: Vec::new(),
        r#box: Some(v1::Box { x1, y1, x2, y2 }),
        mask_input: Vec::new(),
        ..Default::default()
    }
}

fn prompt(request_id: u64, objects: Vec<v1::ObjectPrompt>, multimask: bool) -> v1::Prompt {
    v1::Prompt {
        request_id,
        objects,
        multimask_output: multimask,
        return_low_res_logits: false,
        ..Default::default()
    }
}

/// A comparable summary of masks: per object, per mask (score, area, bbox, rle size,
/// counts).
type Summary = Vec<Vec<(f32, u64, [f32; 4], Vec<u32>, String)>>;

fn summary(masks: &v1::Masks) -> Summary {
    masks
        .objects
        .iter()
        .map(|o| {
            o.masks
                .iter()
                .map(|m| {
                    let b = m.bbox.expect("bbox");
                    let rle = m.rle.clone().expect("rle");
                    (
                        m.score,
                        m.area,
                        [b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1],
                        rle.size,
                        rle.counts,
                    )
                })
                .collect()
        })
        .collect()
}

fn library_summary(objects: &[mobilesam_model::ObjectMasks]) -> Summary {
    objects
        .iter()
        .map(|o| {
            o.masks
                .iter()
                .map(|m| {
                    (
                        m.score,
                        m.area,
                        m.bbox,
                        m.rle.size.to_vec(),
                        m.rle.counts.clone(),
                    )
                })
                .collect()
        })
        .collect()
}

fn cli_summary(json: &Value) -> Summary {
    let f = |v: &Value| v.as_f64().expect("number") as f32;
    json["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            o["masks"]
                .as_array()
                .expect("masks")
                .iter()
                .map(|m| {
                    let b: Vec<f32> = m["bbox"].as_array().expect("bbox").iter().map(f).collect();
                    let size = m["rle"]["size"]
                        .as_array()
                        .expect("size")
                        .iter()
                        .map(|v| v.as_u64().expect("size") as u32)
                        .collect();
                    (
                        f(&m["score"]),
                        m["area"].as_u64().expect("area"),
                        [b[0], b[1], b[2], b[3]],
                        size,
                        m["rle"]["counts"].as_str().expect("counts").to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

fn to_library(objects: &[v1::ObjectPrompt]) -> Vec<mobilesam_model::ObjectPrompt> {
    objects
        .iter()
        .map(|o| mobilesam_model::ObjectPrompt {
            points: o
                .points
                .iter()
                .map(|p| mobilesam_model::Point {
                    x: p.x,
                    y: p.y,
                    label: p.label,
                })
                .collect(),
            bbox: o.r#box.map(|b| mobilesam_model::BoxPrompt {
                x1: b.x1,
                y1: b.y1,
                x2: b.x2,
                y2: b.y2,
            }),
            mask_input: (!o.mask_input.is_empty()).then(|| f32s(&o.mask_input)),
        })
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Streamed masks equal `mobilesam segment`'s and the library's for the same prompts;
/// `mask_input` and `return_low_res_logits` are honoured; model info, health and
/// reflection answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_masks_match_segment_cli_and_library() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let (width, height) = (64, 48);
    let image_path = png_file(width, height, 0);

    let mut stream = Stream::open(&mut client).await;
    let ready = ready(stream.set_image(png(width, height, 0)).await);
    assert_eq!((ready.width, ready.height), (width, height));
    assert!(ready.encode_ms > 0.0);
    assert!(!ready.session_id.is_empty());

    // Two objects, each with a foreground and a background point and a box; three
    // masks each.
    let objects = vec![
        v1::ObjectPrompt {
            r#box: Some(v1::Box {
                x1: 2.0,
                y1: 3.0,
                x2: 60.0,
                y2: 44.0,
            }),
            ..points(vec![point(30.0, 20.0, 1), point(5.0, 5.0, 0)])
        },
        v1::ObjectPrompt {
            r#box: Some(v1::Box {
                x1: 10.0,
                y1: 8.0,
                x2: 50.0,
                y2: 40.0,
            }),
            ..points(vec![point(40.0, 30.0, 1), point(12.0, 9.0, 1)])
        },
    ];
    let multi = masks(stream.ask(prompt(1, objects.clone(), true)).await);
    assert_eq!(multi.request_id, 1);
    assert_eq!(multi.objects.len(), 2);
    assert!(multi.objects.iter().all(|o| o.masks.len() == 3));
    assert!(multi.decode_ms > 0.0);

    // `mobilesam segment`, same image and prompt: identical masks.
    let output = Command::new(env!("CARGO_BIN_EXE_mobilesam"))
        .arg("segment")
        .arg("--checkpoint")
        .arg(checkpoint())
        .arg("--image")
        .arg(&image_path)
        .args(["--points", "[[[30, 20], [5, 5]], [[40, 30], [12, 9]]]"])
        .args(["--labels", "[[1, 0], [1, 1]]"])
        .args(["--bboxes", "[[2, 3, 60, 44], [10, 8, 50, 40]]"])
        .arg("--multimask")
        .output()
        .expect("run mobilesam segment");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cli: Value = serde_json::from_slice(&output.stdout).expect("segment JSON");
    assert_eq!(
        (cli["width"].as_u64(), cli["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(summary(&multi), cli_summary(&cli));

    // Low-resolution logits, then fed back as mask_input (the previous frame's mask).
    let mut with_logits = prompt(3, vec![points(vec![point(30.0, 20.0, 1)])], false);
    with_logits.return_low_res_logits = true;
    let first = masks(stream.ask(with_logits).await);
    let logits = first.objects[0].masks[0].low_res_logits.clone();
    assert_eq!(logits.len(), 256 * 256 * 4);
    let refined_objects = vec![v1::ObjectPrompt {
        mask_input: logits,
        ..points(vec![point(30.0, 20.0, 1)])
    }];
    let refined = masks(stream.ask(prompt(4, refined_objects.clone(), false)).await);
    assert_eq!(refined.request_id, 4);
    assert!(refined.objects[0].masks[0].low_res_logits.is_empty());

    // The library, in process, for every streamed prompt.
    let sam = mobilesam_model::Sam::from_checkpoint(&seeded(), &candle_core::Device::Cpu)
        .expect("load model");
    let embedding = sam.embed(&rgb(width, height, 0)).expect("embed");
    let decode = |objects: &[v1::ObjectPrompt], multimask: bool| {
        let options = mobilesam_model::DecodeOptions {
            multimask,
            return_low_res_logits: true,
            return_polygons: false,
        };
        sam.decode(&embedding, &to_library(objects), options)
            .expect("decode")
    };
    assert_eq!(summary(&multi), library_summary(&decode(&objects, true)));
    let plain = decode(&[points(vec![point(30.0, 20.0, 1)])], false);
    assert_eq!(summary(&first), library_summary(&plain));
    assert_eq!(
        f32s(&first.objects[0].masks[0].low_res_logits),
        plain[0].masks[0]
            .low_res_logits
            .clone()
            .expect("library logits")
    );
    let refined_library = decode(&refined_objects, false);
    assert_eq!(summary(&refined), library_summary(&refined_library));

    // Model info, health (checked by start), reflection.
    let info = client
        .get_model_info(v1::GetModelInfoRequest {})
        .await
        .expect("model info")
        .into_inner();
    assert_eq!(info.name, "mobile_sam");
    assert_eq!(
        info.family, "mobile_sam",
        "the seeded checkpoint's detected family"
    );
    assert_eq!(info.device, "cpu");
    assert_eq!(info.image_size, 1024);
    assert_eq!(info.parameters, sam.parameter_counts().total);
    assert!(info.checkpoint_bytes > 0);
    let services = reflected_services(&server).await;
    assert!(services.contains(&"mobilesam.v1.SegmentAnything".to_string()));
    assert!(services.contains(&"grpc.health.v1.Health".to_string()));

    stream.close_send();
    assert!(stream.end().await.is_ok());
}

async fn reflected_services(server: &Server) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one answer");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// A second image on a stream replaces the session's image; another stream resumes the
/// session without sending the image; unknown and evicted sessions are NOT_FOUND; on
/// SIGTERM the prompts in flight are answered and the server exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_replace_sessions_resume_evict_and_shutdown_drains() {
    // Room for exactly one embedding (256 x 64 x 64 float32 = 4 MiB). The drain deadline is
    // generous: this test checks that draining answers everything, and a loaded CI machine
    // can take longer than the 30 s default to finish the queued work.
    let mut server =
        Server::start(&["--session-cache-bytes", "4MiB", "--shutdown-timeout", "10m"]).await;
    let mut client = server.client().await;
    let click = || prompt(0, vec![points(vec![point(20.0, 20.0, 1)])], false);

    let mut a = Stream::open(&mut client).await;
    let first = ready(a.set_image(png(64, 48, 0)).await);
    let frame1 = masks(a.ask(click()).await);
    assert_eq!(
        frame1.objects[0].masks[0]
            .rle
            .as_ref()
            .map(|r| r.size.clone()),
        Some(vec![48, 64])
    );

    // The next video frame, a different size: same session, new image.
    let second = ready(a.set_image(png(40, 56, 1)).await);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!((second.width, second.height), (40, 56));
    assert!(second.encode_ms > 0.0);
    let frame2 = masks(a.ask(click()).await);
    assert_eq!(
        frame2.objects[0].masks[0]
            .rle
            .as_ref()
            .map(|r| r.size.clone()),
        Some(vec![56, 40])
    );

    // Resume on another stream: no encode, same masks.
    let mut b = Stream::open(&mut client).await;
    let resumed = ready(b.resume(&first.session_id).await);
    assert_eq!(resumed.session_id, first.session_id);
    assert_eq!((resumed.width, resumed.height), (40, 56));
    assert_eq!(resumed.encode_ms, 0.0);
    assert_eq!(summary(&masks(b.ask(click()).await)), summary(&frame2));

    // Unknown session: NOT_FOUND, the stream stays usable on its current session.
    let unknown = error(b.resume("no-such-session").await);
    assert_eq!(unknown.code, Code::NotFound as i32);
    assert!(
        unknown.message.contains("send the image again"),
        "{unknown:?}"
    );
    assert_eq!(summary(&masks(b.ask(click()).await)), summary(&frame2));

    // A new session pushes the old one out of the one-embedding cache.
    let mut c = Stream::open(&mut client).await;
    let other = ready(c.set_image(png(64, 48, 2)).await);
    assert_ne!(other.session_id, first.session_id);
    let evicted = error(c.resume(&first.session_id).await);
    assert_eq!(evicted.code, Code::NotFound as i32);
    assert_eq!(ready(c.resume(&other.session_id).await).encode_ms, 0.0);
    // A stream keeps working on its own image after the cache dropped it.
    assert_eq!(summary(&masks(a.ask(click()).await)), summary(&frame2));
    let metrics = server.scrape();
    assert_eq!(metrics["mobilesam_sessions"], 1.0);
    assert_eq!(metrics["mobilesam_session_cache_bytes"], 4194304.0);

    // SIGTERM with work in flight: an encode running on the only encode worker and prompts
    // queued on (or taken by) the decode lane. Every one is answered, the streams end, the
    // server exits 0.
    let popped = |m: &HashMap<String, f64>| {
        m.get("mobilesam_queue_wait_seconds_count{queue=\"decode\",lane=\"decode\"}")
            .copied()
            .unwrap_or(0.0)
    };
    let popped_before = popped(&server.scrape());
    b.send(Req::SetImage(v1::SetImage {
        image: png(32, 32, 4),
        session_id: String::new(),
        ..Default::default()
    }))
    .await;
    let in_flight = 6;
    for id in 0..in_flight {
        let objects = vec![points(vec![point(10.0 + id as f32, 20.0, 1)]); 4];
        a.send(Req::Prompt(prompt(100 + id, objects, true))).await;
    }
    // Wait until the server has read every prompt (queued or taken by the worker).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = server.scrape();
        let read = popped(&m) - popped_before + m["mobilesam_queue_depth{queue=\"decode\"}"];
        if read >= in_flight as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "prompts never reached the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.terminate();
    // Once the server has taken the signal, new work is refused while the old streams are
    // still being answered: a new stream on the open connection is turned away (the
    // server's GOAWAY, which tonic's client reports as CANCELLED or UNAVAILABLE), and a new
    // connection finds no listener.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .logs
        .lock()
        .expect("logs")
        .iter()
        .any(|l| l.contains("shutting down"))
    {
        assert!(
            Instant::now() < deadline,
            "the server never logged its shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_late_tx, late_requests) = mpsc::channel(1);
    let refused = client
        .segment(ReceiverStream::new(late_requests))
        .await
        .expect_err("a new stream after SIGTERM is refused");
    assert!(
        matches!(refused.code(), Code::Unavailable | Code::Cancelled),
        "{refused:?}"
    );
    let fresh = Channel::from_shared(format!("http://{}", server.grpc))
        .expect("uri")
        .connect()
        .await;
    assert!(
        fresh.is_err(),
        "a new connection after SIGTERM was accepted"
    );
    for id in 0..in_flight {
        let answer = masks(a.recv().await);
        assert_eq!(answer.request_id, 100 + id);
        assert_eq!(answer.objects.len(), 4);
    }
    assert_eq!(ready(b.recv().await).width, 32);
    for stream in [&mut a, &mut b] {
        let end = stream.end().await;
        assert!(
            matches!(&end, Err(s) if s.code() == Code::Unavailable) || end.is_ok(),
            "{end:?}"
        );
    }
    drop((a, b, c, client));
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit status {status:?}");
    let logs = server.logs.lock().expect("logs").join("\n");
    assert!(logs.contains("SIGTERM received"), "{logs}");
}

/// Every bad input is answered with an error naming its request, in order, and the
/// stream stays open; a full queue answers RESOURCE_EXHAUSTED; the metrics count it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_metrics_count_requests() {
    let server = Server::start(&[
        "--max-objects",
        "3",
        "--max-points",
        "3",
        "--queue-capacity",
        "1",
    ])
    .await;
    let mut client = server.client().await;
    let mut s = Stream::open(&mut client).await;
    let good = || points(vec![point(20.0, 20.0, 1)]);
    let set_image = |image: Vec<u8>| {
        Req::SetImage(v1::SetImage {
            image,
            session_id: String::new(),
            ..Default::default()
        })
    };
    let mut corrupt = png(64, 48, 0);
    corrupt.truncate(60);
    let mut wrong_mask = good();
    wrong_mask.mask_input = vec![0; 1000];
    let bad_prompts: Vec<(&str, Vec<v1::ObjectPrompt>)> = vec![
        ("label 2", vec![points(vec![point(1.0, 1.0, 2)])]),
        ("non-finite", vec![points(vec![point(f32::NAN, 1.0, 1)])]),
        (
            "non-finite",
            vec![points(vec![point(1.0, f32::INFINITY, 1)])],
        ),
        ("x2 > x1", vec![boxed(30.0, 10.0, 5.0, 20.0)]),
        ("at least one point or a box", vec![points(vec![])]),
        ("mask_input has 1000 bytes", vec![wrong_mask]),
        ("4 objects", vec![good(); 4]),
        ("4 points", vec![points(vec![point(1.0, 1.0, 1); 4])]),
        ("at least one object", vec![]),
    ];

    // Everything sent at once; answers are read afterwards, in order.
    s.send(Req::Prompt(prompt(1, vec![good()], false))).await;
    s.send(set_image(corrupt)).await;
    s.send(set_image(b"hello, this is not an image".to_vec()))
        .await;
    s.send(set_image(png_header_only(12_000, 10_000))).await;
    s.send(set_image(Vec::new())).await;
    s.send_raw(v1::SegmentRequest { request: None }).await;
    s.send(set_image(png(64, 48, 0))).await;
    for (i, (_, objects)) in bad_prompts.iter().enumerate() {
        s.send(Req::Prompt(prompt(10 + i as u64, objects.clone(), false)))
            .await;
    }
    s.send(Req::Prompt(prompt(99, vec![good()], true))).await;

    let before_image = error(s.recv().await);
    assert_eq!(
        (before_image.request_id, before_image.code),
        (1, Code::FailedPrecondition as i32)
    );
    for expected in ["cannot decode", "cannot decode", "limit", "needs an image"] {
        let e = error(s.recv().await);
        assert_eq!((e.request_id, e.code), (0, Code::InvalidArgument as i32));
        assert!(e.message.contains(expected), "{expected}: {e:?}");
    }
    let empty = error(s.recv().await);
    assert_eq!(empty.code, Code::InvalidArgument as i32);
    ready(s.recv().await);
    for (i, (expected, _)) in bad_prompts.iter().enumerate() {
        let e = error(s.recv().await);
        assert_eq!(e.request_id, 10 + i as u64);
        assert_eq!(e.code, Code::InvalidArgument as i32, "{e:?}");
        assert!(e.message.contains(expected), "{expected}: {e:?}");
    }
    let answered = masks(s.recv().await);
    assert_eq!(answered.request_id, 99);
    assert_eq!(answered.objects[0].masks.len(), 3);

    // A burst of prompts against a queue of one: some are refused at once, the others
    // answered, all in request order.
    let burst = 24u64;
    for id in 0..burst {
        s.send(Req::Prompt(prompt(200 + id, vec![good(); 3], true)))
            .await;
    }
    let (mut ok, mut exhausted) = (0u64, 0u64);
    for id in 0..burst {
        match s.recv().await {
            Resp::Masks(m) => {
                assert_eq!(m.request_id, 200 + id);
                ok += 1;
            }
            Resp::Error(e) => {
                assert_eq!(e.request_id, 200 + id);
                assert_eq!(e.code, Code::ResourceExhausted as i32, "{e:?}");
                exhausted += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok >= 1 && exhausted >= 1, "ok {ok}, exhausted {exhausted}");
    // Still open and serving.
    assert_eq!(
        masks(s.ask(prompt(300, vec![good()], false)).await).request_id,
        300
    );
    client
        .get_model_info(v1::GetModelInfoRequest {})
        .await
        .expect("model info");

    let m = server.scrape();
    let get = |key: &str| m.get(key).copied().unwrap_or(0.0);
    let total = |kind: &str, code: &str| {
        get(&format!(
            "mobilesam_requests_total{{kind=\"{kind}\",code=\"{code}\"}}"
        ))
    };
    let prompts_ok = 1.0 + ok as f64 + 1.0;
    assert_eq!(total("prompt", "FAILED_PRECONDITION"), 1.0);
    assert_eq!(total("set_image", "INVALID_ARGUMENT"), 4.0);
    assert_eq!(total("empty", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(total("set_image", "OK"), 1.0);
    assert_eq!(
        total("prompt", "INVALID_ARGUMENT"),
        bad_prompts.len() as f64
    );
    assert_eq!(total("prompt", "RESOURCE_EXHAUSTED"), exhausted as f64);
    assert_eq!(total("prompt", "OK"), prompts_ok);
    assert_eq!(total("model_info", "OK"), 1.0);
    assert_eq!(get("mobilesam_encode_duration_seconds_count"), 1.0);
    assert_eq!(get("mobilesam_decode_duration_seconds_count"), prompts_ok);
    let all_prompts = 1.0 + bad_prompts.len() as f64 + 1.0 + burst as f64 + 1.0;
    assert_eq!(
        get("mobilesam_request_duration_seconds_count{kind=\"prompt\",lane=\"decode\"}"),
        all_prompts
    );
    assert_eq!(
        get("mobilesam_queue_wait_seconds_count{queue=\"decode\",lane=\"decode\"}"),
        prompts_ok
    );
    assert_eq!(
        get("mobilesam_decode_duration_seconds_bucket{le=\"+Inf\"}"),
        prompts_ok
    );
    assert!(m.contains_key("mobilesam_encode_duration_seconds_bucket{le=\"0.001\"}"));
    assert!(m.contains_key("mobilesam_encode_duration_seconds_bucket{le=\"60\"}"));
    assert_eq!(get("mobilesam_sessions"), 1.0);
    assert_eq!(get("mobilesam_session_cache_bytes"), 4194304.0);
    assert_eq!(get("mobilesam_queue_depth{queue=\"decode\"}"), 0.0);
    assert_eq!(get("mobilesam_active_streams"), 1.0);
}

/// Several streams at once, two images encoded concurrently on two workers, two more
/// streams resuming them: each stream gets the masks of its own image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_get_their_own_answers() {
    let server = Server::start(&["--workers", "2"]).await;
    let client = server.client().await;
    let run = |image: Option<Vec<u8>>, resume: Option<String>| {
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut s = Stream::open(&mut client).await;
            let image_ready = match (image, resume) {
                (Some(image), _) => ready(s.set_image(image).await),
                (None, Some(id)) => ready(s.resume(&id).await),
                (None, None) => unreachable!(),
            };
            let mut answers = Vec::new();
            for id in 0..4u64 {
                let objects = vec![points(vec![point(8.0 * id as f32 + 5.0, 20.0, 1)])];
                s.send(Req::Prompt(prompt(id, objects, true))).await;
            }
            for id in 0..4u64 {
                let m = masks(s.recv().await);
                assert_eq!(m.request_id, id);
                answers.push(summary(&m));
            }
            (image_ready, answers)
        })
    };
    let first = run(Some(png(64, 48, 0)), None);
    let second = run(Some(png(48, 64, 3)), None);
    let (first, second) = (
        first.await.expect("stream 1"),
        second.await.expect("stream 2"),
    );
    assert_ne!(first.0.session_id, second.0.session_id);
    assert_ne!(first.1, second.1);
    let again_first = run(None, Some(first.0.session_id.clone()));
    let again_second = run(None, Some(second.0.session_id.clone()));
    let (again_first, again_second) = (
        again_first.await.expect("stream 3"),
        again_second.await.expect("stream 4"),
    );
    assert_eq!(again_first.1, first.1);
    assert_eq!(again_second.1, second.1);
    assert_eq!(again_first.0.encode_ms, 0.0);
    let metrics = server.scrape();
    assert_eq!(metrics["mobilesam_encode_duration_seconds_count"], 2.0);
}

/// How long each prompt decode takes in `abandoned_prompts_are_cancelled` (a debug-build
/// fault switch): long enough for the test to queue prompts and leave while one runs.
const SLOW_DECODE_MS: u64 = 2000;

/// A client that goes away cancels its queued work: its prompts, queued on the decode
/// lane behind another stream's slow decode, are dropped without running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_prompts_are_cancelled() {
    let server = Server::launch(
        Launch::args(&["--decode-workers", "1"])
            .env("MOBILESAM_TEST_DECODE_DELAY_MS", SLOW_DECODE_MS.to_string()),
    )
    .await;
    let mut client = server.client().await;
    let mut leaver = Stream::open(&mut client).await;
    ready(leaver.set_image(png(64, 48, 0)).await);
    let mut busy = Stream::open(&mut client).await;
    ready(busy.set_image(png(64, 48, 1)).await);

    // Keep the only decode worker busy with another stream's prompt.
    busy.send(Req::Prompt(prompt(
        1,
        vec![points(vec![point(9.0, 9.0, 1)])],
        false,
    )))
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let decode_metric = |key: &str| {
        let key = key.to_string();
        move |m: &HashMap<String, f64>| m.get(&key).copied().unwrap_or(0.0)
    };
    let taken =
        decode_metric("mobilesam_queue_wait_seconds_count{queue=\"decode\",lane=\"decode\"}");
    let depth = decode_metric("mobilesam_queue_depth{queue=\"decode\"}");
    let decoded = decode_metric("mobilesam_decode_duration_seconds_count");
    let cancelled = decode_metric("mobilesam_jobs_cancelled_total{queue=\"decode\"}");
    while taken(&server.scrape()) < 1.0 {
        assert!(Instant::now() < deadline, "the busy prompt was never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Queue prompts behind it, then leave while it still runs.
    let queued = 5;
    for id in 0..queued {
        leaver
            .send(Req::Prompt(prompt(
                id,
                vec![points(vec![point(9.0, 9.0, 1)])],
                false,
            )))
            .await;
    }
    let metrics = loop {
        let metrics = server.scrape();
        if depth(&metrics) == queued as f64 {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the prompts never queued: {metrics:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        decoded(&metrics),
        0.0,
        "the busy decode must still run when the client leaves"
    );
    drop(leaver);

    // The busy stream is answered; the abandoned prompts are taken and skipped after it.
    assert_eq!(masks(busy.recv().await).request_id, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = server.scrape();
        if depth(&metrics) == 0.0 {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never drained: {metrics:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cancelled(&metrics), queued as f64, "{metrics:?}");
    assert_eq!(
        decoded(&metrics),
        1.0,
        "only the busy prompt ran: {metrics:?}"
    );

    // The server is still fine.
    let after = masks(
        busy.ask(prompt(7, vec![points(vec![point(9.0, 9.0, 1)])], false))
            .await,
    );
    assert_eq!(after.request_id, 7);
}
