//! Segment everything over gRPC, end to end: the real `mobilesam serve` on a loopback
//! port, a tonic client, and `mobilesam generate` as the reference for every mask.
//!
//! Weights are the seeded random weights; their predicted IoUs and stability scores are
//! low, so the filters are set to 0 for masks to survive (NMS stays on). Grids are small:
//! the image encoder is the slow part on CPU.

use crate::cli_support;
use crate::server_support;

use std::time::Duration;

use cli_support::{arg, checkpoint, image, run, success, HEIGHT, WIDTH};
use mobilesam_proto::v1;
use mobilesam_proto::v1::generate_masks_response::Response as GenResp;
use mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_proto::v1::segment_response::Response as Resp;
use serde_json::Value;
use server_support::{requests, Server, Stream, ANSWER_TIMEOUT};
use tonic::transport::Channel;
use tonic::Code;

/// One generated mask with every field, comparable across the CLI's JSON and the wire.
#[derive(Debug, Clone, PartialEq)]
struct MaskRecord {
    size: Vec<u32>,
    counts: String,
    area: u64,
    /// Corners as `Mask.bbox`: `x2 = x + width in pixels`.
    bbox: [f32; 4],
    predicted_iou: f32,
    /// `None` for NaN (an empty mask's 0/0), which the CLI writes as JSON null.
    stability_score: Option<f32>,
    point: [f32; 2],
    crop_box: [f32; 4],
}

/// The generator settings of a test, as CLI flags and as `GenerateParams`.
struct Settings {
    points_per_side: u32,
    points_per_batch: u32,
    crop_n_layers: u32,
    min_mask_region_area: u64,
}

impl Settings {
    fn flags(&self) -> Vec<String> {
        [
            ("--points-per-side", self.points_per_side.to_string()),
            ("--points-per-batch", self.points_per_batch.to_string()),
            ("--crop-n-layers", self.crop_n_layers.to_string()),
            (
                "--min-mask-region-area",
                self.min_mask_region_area.to_string(),
            ),
            ("--pred-iou-thresh", "0".into()),
            ("--stability-score-thresh", "0".into()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }

    fn params(&self) -> v1::GenerateParams {
        v1::GenerateParams {
            points_per_side: Some(self.points_per_side),
            points_per_batch: Some(self.points_per_batch),
            crop_n_layers: Some(self.crop_n_layers),
            min_mask_region_area: Some(self.min_mask_region_area),
            pred_iou_thresh: Some(0.0),
            stability_score_thresh: Some(0.0),
            ..Default::default()
        }
    }
}

/// `mobilesam generate` on the test image.
fn cli_masks(settings: &Settings) -> Vec<MaskRecord> {
    let flags = settings.flags();
    let mut args = vec![
        "generate",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(image()),
    ];
    args.extend(flags.iter().map(String::as_str));
    let json: Value = serde_json::from_str(&success(&run(&args))).expect("generate JSON");
    assert_eq!(
        (json["width"].as_u64(), json["height"].as_u64()),
        (Some(64), Some(48))
    );
    json["masks"]
        .as_array()
        .expect("masks")
        .iter()
        .map(|m| {
            let ints = |v: &Value| -> Vec<f32> {
                v.as_array()
                    .expect("array")
                    .iter()
                    .map(|x| x.as_i64().expect("int") as f32)
                    .collect()
            };
            let area = m["area"].as_u64().expect("area");
            let b = ints(&m["bbox"]);
            // The reference's bbox: w = x_max - x_min; as corners x2 = x_max + 1.
            let bbox = if area == 0 {
                [0.0; 4]
            } else {
                [b[0], b[1], b[0] + b[2] + 1.0, b[1] + b[3] + 1.0]
            };
            let c = ints(&m["crop_box"]);
            let point = &m["point_coords"][0];
            MaskRecord {
                size: m["segmentation"]["size"]
                    .as_array()
                    .expect("size")
                    .iter()
                    .map(|v| v.as_u64().expect("size") as u32)
                    .collect(),
                counts: m["segmentation"]["counts"]
                    .as_str()
                    .expect("counts")
                    .to_string(),
                area,
                bbox,
                predicted_iou: m["predicted_iou"].as_f64().expect("iou") as f32,
                stability_score: m["stability_score"].as_f64().map(|v| v as f32),
                point: [
                    point[0].as_f64().expect("x") as f32,
                    point[1].as_f64().expect("y") as f32,
                ],
                crop_box: [c[0], c[1], c[0] + c[2], c[1] + c[3]],
            }
        })
        .collect()
}

fn record(g: &v1::GeneratedMask) -> MaskRecord {
    let mask = g.mask.as_ref().expect("mask");
    let rle = mask.rle.as_ref().expect("rle");
    let b = mask.bbox.expect("bbox");
    let p = g.point.as_ref().expect("point");
    assert_eq!(p.label, 1);
    let c = g.crop_box.expect("crop box");
    MaskRecord {
        size: rle.size.clone(),
        counts: rle.counts.clone(),
        area: mask.area,
        bbox: [b.x1, b.y1, b.x2, b.y2],
        predicted_iou: mask.score,
        stability_score: (!g.stability_score.is_nan()).then_some(g.stability_score),
        point: [p.x, p.y],
        crop_box: [c.x1, c.y1, c.x2, c.y2],
    }
}

fn image_bytes() -> Vec<u8> {
    std::fs::read(image()).expect("read test image")
}

/// Calls `GenerateMasks` and reads the whole answer: the masks and the summary.
async fn generate_rpc(
    client: &mut SegmentAnythingClient<Channel>,
    request: v1::GenerateMasksRequest,
) -> Result<(Vec<v1::GeneratedMask>, v1::GenerateSummary), tonic::Status> {
    let mut stream = client.generate_masks(request).await?.into_inner();
    let mut masks = Vec::new();
    loop {
        let next = tokio::time::timeout(ANSWER_TIMEOUT, stream.message())
            .await
            .expect("answer in time")?;
        match next.and_then(|m| m.response) {
            Some(GenResp::Mask(mask)) => masks.push(mask),
            Some(GenResp::Summary(summary)) => {
                let end = stream.message().await.expect("clean end");
                assert!(end.is_none(), "the summary is the last message");
                return Ok((masks, summary));
            }
            None => panic!("the stream ended without a summary"),
        }
    }
}

fn expect_code(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, text: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(text), "{status:?} lacks {text:?}");
}

/// Reads a generation's answer: masks until the summary.
async fn generated(
    stream: &mut Stream,
    request_id: u64,
) -> (Vec<v1::GeneratedMask>, v1::GenerateSummary) {
    let mut masks = Vec::new();
    loop {
        match stream.recv().await {
            Resp::GeneratedMask(m) => {
                assert_eq!(m.request_id, request_id);
                masks.push(m);
            }
            Resp::GenerateSummary(s) => {
                assert_eq!(s.request_id, request_id);
                return (masks, s);
            }
            other => panic!("expected generated masks, got {other:?}"),
        }
    }
}

fn generate_request(request_id: u64, params: v1::GenerateParams) -> Req {
    Req::GenerateMasks(v1::GenerateMasks {
        request_id,
        params: Some(params),
    })
}

fn prompt(request_id: u64) -> Req {
    Req::Prompt(v1::Prompt {
        request_id,
        objects: vec![v1::ObjectPrompt {
            points: vec![v1::Point {
                x: 30.0,
                y: 20.0,
                label: 1,
            }],
            ..Default::default()
        }],
        multimask_output: false,
        return_low_res_logits: false,
        ..Default::default()
    })
}

fn records(masks: &[v1::GeneratedMask]) -> Vec<MaskRecord> {
    masks.iter().map(record).collect()
}

/// The RPC with an image and with a session, and the stream after `SetImage`: the same
/// masks as `mobilesam generate`, in the same order, request ids echoed, the answer in
/// request order with a following prompt; bad requests are refused with the right code
/// and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_masks_match_the_cli_over_rpc_and_stream() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let grid = Settings {
        points_per_side: 8,
        points_per_batch: 16,
        crop_n_layers: 0,
        min_mask_region_area: 0,
    };
    let expected = cli_masks(&grid);
    assert!(expected.len() > 10, "{} masks", expected.len());
    // NMS (box IoU > 0.7) removed some of the 8 * 8 * 3 masks.
    assert!(expected.len() < 192, "{} masks", expected.len());

    // The RPC with the image bytes.
    let (masks, summary) = generate_rpc(
        &mut client,
        v1::GenerateMasksRequest {
            image: image_bytes(),
            session_id: String::new(),
            params: Some(grid.params()),
        },
    )
    .await
    .expect("generate from the image");
    assert_eq!(records(&masks), expected);
    assert!(masks.iter().all(|m| m.request_id == 0));
    assert_eq!(summary.mask_count as usize, masks.len());
    assert_eq!((summary.width, summary.height), (WIDTH, HEIGHT));
    assert!(summary.encode_ms > 0.0);
    assert!(summary.generate_ms >= summary.encode_ms);

    // Small-region removal edits and re-filters every mask at the end: still the CLI's.
    let cleaned = Settings {
        points_per_side: 4,
        points_per_batch: 64,
        crop_n_layers: 0,
        min_mask_region_area: 30,
    };
    let (masks, summary) = generate_rpc(
        &mut client,
        v1::GenerateMasksRequest {
            image: image_bytes(),
            session_id: String::new(),
            params: Some(cleaned.params()),
        },
    )
    .await
    .expect("generate with small-region removal");
    assert!(!masks.is_empty());
    assert_eq!(records(&masks), cli_masks(&cleaned));
    assert_eq!(summary.mask_count as usize, masks.len());

    // The stream: a generation before any image, then SetImage, a generation followed by a
    // prompt (answered after the whole generation), bad parameters, a prompt.
    let mut s = Stream::open(&mut client).await;
    s.send(generate_request(1, grid.params())).await;
    s.send(Req::SetImage(v1::SetImage {
        image: image_bytes(),
        session_id: String::new(),
        ..Default::default()
    }))
    .await;
    s.send(generate_request(7, grid.params())).await;
    s.send(prompt(8)).await;
    let bad = v1::GenerateParams {
        points_per_side: Some(0),
        ..grid.params()
    };
    s.send(generate_request(9, bad)).await;
    s.send(prompt(10)).await;
    match s.recv().await {
        Resp::Error(e) => {
            assert_eq!((e.request_id, e.code), (1, Code::FailedPrecondition as i32));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let session_id = match s.recv().await {
        Resp::ImageReady(r) => r.session_id,
        other => panic!("expected ImageReady, got {other:?}"),
    };
    let (masks, summary) = generated(&mut s, 7).await;
    assert_eq!(records(&masks), expected);
    assert_eq!(summary.mask_count as usize, masks.len());
    assert_eq!(summary.encode_ms, 0.0);
    match s.recv().await {
        Resp::Masks(m) => assert_eq!(m.request_id, 8),
        other => panic!("expected masks 8, got {other:?}"),
    }
    match s.recv().await {
        Resp::Error(e) => {
            assert_eq!((e.request_id, e.code), (9, Code::InvalidArgument as i32));
            assert!(e.message.contains("points_per_side is 0"), "{e:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    match s.recv().await {
        Resp::Masks(m) => assert_eq!(m.request_id, 10),
        other => panic!("expected masks 10, got {other:?}"),
    }

    // The RPC with the stream's session: its cached embedding, no encode.
    let by_session = |params: v1::GenerateParams| v1::GenerateMasksRequest {
        image: Vec::new(),
        session_id: session_id.clone(),
        params: Some(params),
    };
    let (masks, summary) = generate_rpc(&mut client, by_session(grid.params()))
        .await
        .expect("generate from the session");
    assert_eq!(records(&masks), expected);
    assert_eq!(summary.encode_ms, 0.0);

    // Refusals.
    let with =
        |image: Vec<u8>, session_id: &str, params: v1::GenerateParams| v1::GenerateMasksRequest {
            image,
            session_id: session_id.into(),
            params: Some(params),
        };
    let refusals = [
        (
            with(Vec::new(), "no-such-session", grid.params()),
            Code::NotFound,
            "unknown",
        ),
        (
            with(Vec::new(), "", grid.params()),
            Code::InvalidArgument,
            "needs an image",
        ),
        (
            with(image_bytes(), &session_id, grid.params()),
            Code::InvalidArgument,
            "not both",
        ),
        (
            by_session(v1::GenerateParams {
                crop_n_layers: Some(1),
                ..grid.params()
            }),
            Code::InvalidArgument,
            "crop_n_layers",
        ),
        (
            by_session(v1::GenerateParams {
                pred_iou_thresh: Some(f32::NAN),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "pred_iou_thresh is NaN",
        ),
        (
            by_session(v1::GenerateParams {
                points_per_side: Some(10_000),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "points_per_side is 10000",
        ),
        (
            with(b"not an image".to_vec(), "", grid.params()),
            Code::InvalidArgument,
            "cannot decode",
        ),
    ];
    let refused = refusals.len() as f64;
    for (request, code, text) in refusals {
        expect_code(generate_rpc(&mut client, request).await, code, text);
    }

    // Every generation counted under kind "generate".
    let m = server.scrape();
    assert_eq!(requests(&m, "generate", "OK"), 4.0);
    assert_eq!(requests(&m, "generate", "FAILED_PRECONDITION"), 1.0);
    assert_eq!(
        requests(&m, "generate", "INVALID_ARGUMENT"),
        refused - 1.0 + 1.0
    );
    assert_eq!(requests(&m, "generate", "NOT_FOUND"), 1.0);
    assert_eq!(
        m.get("mobilesam_request_duration_seconds_count{kind=\"generate\",lane=\"generate\"}"),
        Some(&(4.0 + 1.0 + refused + 1.0))
    );
}

/// One generate worker: prompts are answered while a long generation runs (on their own
/// decode lane), a full generate queue refuses the next generation at once, and clients
/// that go away stop the running generation between batches and drop the queued one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_generations_yield_to_prompts_refuse_when_full_and_stop_when_abandoned() {
    // Generations have their own queue bound; the decode and encode queues keep the default.
    let server = Server::start(&["--generate-queue-capacity", "1"]).await;
    let mut client = server.client().await;
    let mut s = Stream::open(&mut client).await;
    s.send(Req::SetImage(v1::SetImage {
        image: image_bytes(),
        session_id: String::new(),
        ..Default::default()
    }))
    .await;
    let session_id = match s.recv().await {
        Resp::ImageReady(r) => r.session_id,
        other => panic!("expected ImageReady, got {other:?}"),
    };
    // 128 * 128 points, one per batch: far longer than this test waits.
    let long = v1::GenerateMasksRequest {
        image: Vec::new(),
        session_id: session_id.clone(),
        params: Some(v1::GenerateParams {
            points_per_side: Some(128),
            points_per_batch: Some(1),
            ..Default::default()
        }),
    };
    let mut running = client
        .generate_masks(long.clone())
        .await
        .expect("accepted")
        .into_inner();
    server
        .wait_log("generating masks", Duration::from_secs(60))
        .await;
    // The only generate worker is busy; the next generation waits in the generate queue
    // (capacity 1) and the one after is refused.
    let queued = client
        .generate_masks(long.clone())
        .await
        .expect("queued")
        .into_inner();
    expect_code(
        generate_rpc(&mut client, long.clone()).await,
        Code::ResourceExhausted,
        "queue is full",
    );
    // A prompt is answered while the generation runs.
    s.send(prompt(5)).await;
    match s.recv().await {
        Resp::Masks(m) => assert_eq!(m.request_id, 5),
        other => panic!("expected masks, got {other:?}"),
    }
    let nothing_yet = tokio::time::timeout(Duration::from_millis(10), running.message()).await;
    assert!(nothing_yet.is_err(), "the long generation is still running");

    // Both clients go away: the running generation stops at its next batch and the
    // queued one is dropped without running.
    drop(running);
    drop(queued);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = server.scrape();
        let cancelled = m
            .get("mobilesam_jobs_cancelled_total{queue=\"generate\"}")
            .copied()
            .unwrap_or(0.0);
        if cancelled == 2.0 && requests(&m, "generate", "CANCELLED") == 2.0 {
            assert_eq!(requests(&m, "generate", "RESOURCE_EXHAUSTED"), 1.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cancelled jobs: {cancelled}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The generate worker is free again.
    let small = v1::GenerateMasksRequest {
        params: Some(v1::GenerateParams {
            points_per_side: Some(2),
            ..Default::default()
        }),
        ..long
    };
    let (_, summary) = generate_rpc(&mut client, small).await.expect("generate");
    assert_eq!((summary.width, summary.height), (WIDTH, HEIGHT));
}
