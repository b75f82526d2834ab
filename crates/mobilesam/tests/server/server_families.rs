//! The real server with the reduced SAM 2.1 and SAM ViT fixtures (`tests/fixtures/sam2/`,
//! `tests/fixtures/sam/`): `GetModelInfo` names the family and whether it has memory
//! tracking; a `Segment` stream's and the unary RPCs' masks are the library's
//! `Sam::decode` on the same image (points, a box, multimask); gRPC-web serves SAM 2.1;
//! `GenerateMasks` streams masks; `Prompt.track` follows objects from frame to frame; and a
//! SAM 2.1 embedding, high-resolution features included, round-trips through the shared
//! embedding store (a second replica answers from it without encoding, same masks).

use crate::server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::Device;
use mobilesam_checkpoint::digest::{sha256_hex, Sha256Digest};
use mobilesam_model::{BoxPrompt, DecodeOptions, ObjectPrompt, Point, Sam};
use mobilesam_proto::v1;
use mobilesam_proto::v1::generate_masks_response::Response as GenResp;
use mobilesam_proto::v1::EmbeddingSource;
use mobilesam_server::store::{value, ModelId};
use prost::Message;
use server_support::redis::Redis;
use server_support::{masks, metric, png, ready, rgb, Launch, Server, Stream, ANSWER_TIMEOUT};

/// The reduced seeded SAM 2.1 checkpoint (prompt width 64).
fn sam2() -> PathBuf {
    server_support::workspace().join("tests/fixtures/sam2/sam2.1_hiera_r_seed0.pt")
}

/// The reduced seeded SAM ViT checkpoint (prompt width 64).
fn sam_vit() -> PathBuf {
    server_support::workspace().join("tests/fixtures/sam/sam_vit_r_seed0.pth")
}

async fn serve(checkpoint: PathBuf, args: &[&str]) -> Server {
    Server::launch(Launch::args(args).checkpoint(checkpoint)).await
}

/// Two objects: two points of which one background, and a point with a box; three masks
/// each.
fn prompt(request_id: u64) -> v1::Prompt {
    let point = |x, y, label| v1::Point { x, y, label };
    v1::Prompt {
        request_id,
        objects: vec![
            v1::ObjectPrompt {
                points: vec![point(20.0, 14.0, 1), point(50.0, 30.0, 0)],
                ..Default::default()
            },
            v1::ObjectPrompt {
                points: vec![point(30.0, 24.0, 1)],
                r#box: Some(v1::Box {
                    x1: 10.0,
                    y1: 8.0,
                    x2: 48.0,
                    y2: 36.0,
                }),
                ..Default::default()
            },
        ],
        multimask_output: true,
        ..Default::default()
    }
}

/// [`prompt`] decoded by the library on [`rgb`]`(64, 48, 0)`: (score, RLE counts) per mask.
fn library_masks(checkpoint: &Path) -> Vec<Vec<(f32, String)>> {
    let sam = Sam::load(checkpoint, &Device::Cpu).expect("model");
    let embedding = sam.embed(&rgb(64, 48, 0)).expect("embed");
    let point = |x, y, label| Point { x, y, label };
    let objects = [
        ObjectPrompt {
            points: vec![point(20.0, 14.0, 1), point(50.0, 30.0, 0)],
            ..Default::default()
        },
        ObjectPrompt {
            points: vec![point(30.0, 24.0, 1)],
            bbox: Some(BoxPrompt {
                x1: 10.0,
                y1: 8.0,
                x2: 48.0,
                y2: 36.0,
            }),
            mask_input: None,
        },
    ];
    let options = DecodeOptions {
        multimask: true,
        ..Default::default()
    };
    let decoded = sam.decode(&embedding, &objects, options).expect("decode");
    decoded
        .iter()
        .map(|o| {
            o.masks
                .iter()
                .map(|m| (m.score, m.rle.counts.clone()))
                .collect()
        })
        .collect()
}

/// The served masks as (score, RLE counts) per mask.
fn served(masks: &v1::Masks) -> Vec<Vec<(f32, String)>> {
    masks
        .objects
        .iter()
        .map(|o| {
            o.masks
                .iter()
                .map(|m| (m.score, m.rle.as_ref().expect("rle").counts.clone()))
                .collect()
        })
        .collect()
}

/// Same masks, scores within float noise of the library's.
fn assert_same(got: &[Vec<(f32, String)>], want: &[Vec<(f32, String)>]) {
    assert_eq!(got.len(), want.len(), "objects");
    for (object, expected) in got.iter().zip(want) {
        assert_eq!(object.len(), 3, "three masks");
        for ((score, counts), (want_score, want_counts)) in object.iter().zip(expected) {
            assert_eq!(counts, want_counts, "mask");
            assert!(
                (score - want_score).abs() <= 1e-5,
                "{score} vs {want_score}"
            );
        }
    }
}

async fn model_info(server: &Server) -> v1::ModelInfo {
    server
        .client()
        .await
        .get_model_info(v1::GetModelInfoRequest {})
        .await
        .expect("GetModelInfo")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam2_serves_the_library_masks_on_every_transport() {
    let server = serve(sam2(), &[]).await;
    let info = model_info(&server).await;
    assert_eq!(info.family, "sam2.1_hiera");
    assert!(info.memory_tracking);
    let expected = library_masks(&sam2());

    // The bidi stream.
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    let opened = ready(stream.set_image(png(64, 48, 0)).await);
    assert_eq!((opened.width, opened.height), (64, 48));
    assert_same(&served(&masks(stream.ask(prompt(1)).await)), &expected);

    // Unary SetImage and Predict.
    let set = client
        .set_image(v1::SetImage {
            image: png(64, 48, 0),
            ..Default::default()
        })
        .await
        .expect("SetImage")
        .into_inner();
    let predicted = client
        .predict(v1::PredictRequest {
            session_id: set.session_id.clone(),
            prompt: Some(prompt(2)),
        })
        .await
        .expect("Predict")
        .into_inner();
    assert_same(&served(&predicted), &expected);

    // gRPC-web over HTTP/1.1, as the annotation page calls it.
    let info = grpc_web(&server, "GetModelInfo", &v1::GetModelInfoRequest {});
    let info = v1::ModelInfo::decode(info.as_slice()).expect("ModelInfo");
    assert_eq!(
        (info.family.as_str(), info.memory_tracking),
        ("sam2.1_hiera", true)
    );
    let request = v1::PredictRequest {
        session_id: set.session_id,
        prompt: Some(prompt(3)),
    };
    let web = grpc_web(&server, "Predict", &request);
    let web = v1::Masks::decode(web.as_slice()).expect("Masks");
    assert_same(&served(&web), &expected);

    // GenerateMasks streams masks and a summary.
    let params = v1::GenerateParams {
        points_per_side: Some(4),
        pred_iou_thresh: Some(0.0),
        stability_score_thresh: Some(0.0),
        ..Default::default()
    };
    let mut generated = client
        .generate_masks(v1::GenerateMasksRequest {
            image: png(64, 48, 0),
            session_id: String::new(),
            params: Some(params),
        })
        .await
        .expect("GenerateMasks")
        .into_inner();
    let mut count = 0;
    loop {
        let next = tokio::time::timeout(ANSWER_TIMEOUT, generated.message())
            .await
            .expect("answer in time")
            .expect("a message");
        match next.and_then(|m| m.response) {
            Some(GenResp::Mask(_)) => count += 1,
            Some(GenResp::Summary(summary)) => {
                assert_eq!(summary.mask_count, count);
                break;
            }
            None => panic!("the stream ended before its summary"),
        }
    }
    assert!(count > 0, "masks generated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam_vit_reports_its_family_and_serves_the_library_masks() {
    let server = serve(sam_vit(), &[]).await;
    let info = model_info(&server).await;
    assert_eq!(info.family, "sam_vit");
    assert!(!info.memory_tracking);
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    ready(stream.set_image(png(64, 48, 0)).await);
    let expected = library_masks(&sam_vit());
    assert_same(&served(&masks(stream.ask(prompt(1)).await)), &expected);
}

/// `Prompt.track` with both fixtures: two objects tracked on frame 0 are followed on the
/// next two frames (`ImageReady.tracked`, one mask each, ids ascending). SAM ViT follows
/// them with the recipe (TRACKED); SAM 2.1 with its memory tracker, whose seeded
/// object-score head finds no object on these frames: OCCLUDED, an empty mask, still
/// followed (`server_memory_tracking` checks visible objects with a rescaled head).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_follows_objects_with_sam2_and_sam_vit() {
    for (checkpoint, state) in [
        (sam2(), v1::TrackState::Occluded),
        (sam_vit(), v1::TrackState::Tracked),
    ] {
        let server = serve(checkpoint.clone(), &[]).await;
        let mut client = server.client().await;
        let mut stream = Stream::open(&mut client).await;
        let first = ready(stream.set_image(png(64, 48, 0)).await);
        assert!(first.tracked.is_none());
        let mut track = prompt(1);
        track.multimask_output = false;
        track.track = true;
        for (i, object) in track.objects.iter_mut().enumerate() {
            object.object_id = i as u64 + 1;
        }
        let answer = masks(stream.ask(track).await);
        assert_eq!(answer.objects.len(), 2, "{checkpoint:?}");
        for variant in [1, 2] {
            let frame = ready(stream.set_image(png(64, 48, variant)).await);
            assert_eq!(frame.session_id, first.session_id);
            let tracked = frame.tracked.expect("ImageReady.tracked");
            let ids: Vec<u64> = tracked.objects.iter().map(|o| o.object_id).collect();
            assert_eq!(ids, [1, 2], "{checkpoint:?} frame {variant}");
            for object in &tracked.objects {
                assert_eq!(object.state(), state, "{checkpoint:?}");
                assert_eq!(object.masks.len(), 1);
                if state == v1::TrackState::Occluded {
                    assert_eq!(
                        object.masks[0].area, 0,
                        "an occluded object's mask is empty"
                    );
                }
            }
        }
    }
}

/// Two replicas serving SAM 2.1 on one real redis: B opens A's image from the store
/// (source STORE, no encode) and its masks are A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sam2_embedding_round_trips_through_the_store() {
    let redis = Redis::start();
    let url = redis.url(0);
    let args = ["--embedding-store", url.as_str()];
    let (a, b) = tokio::join!(serve(sam2(), &args), serve(sam2(), &args));
    let image = png(64, 48, 0);
    let digest = sha256_hex(&image);

    let mut client = a.client().await;
    let mut on_a = Stream::open(&mut client).await;
    let opened = ready(on_a.set_image(image.clone()).await);
    assert_eq!(opened.source, EmbeddingSource::Encoded as i32);
    let expected = served(&masks(on_a.ask(prompt(1)).await));

    // The stored value holds the high-resolution levels.
    let model = ModelId::new(
        Sha256Digest::of_file(&sam2())
            .expect("hash the checkpoint")
            .to_string(),
    );
    let bytes = redis.wait_for(0, &model.embedding_key(&digest), |v| {
        value::decode(v, &model, &digest).is_ok()
    });
    let host = value::decode(&bytes, &model, &digest).expect("decodes");
    assert_eq!(host.channels, 64);
    assert!(host.high_res.is_some(), "high-resolution levels stored");

    let mut client = b.client().await;
    let mut on_b = Stream::open(&mut client).await;
    let reused = ready(on_b.set_image(image).await);
    assert_eq!(reused.source, EmbeddingSource::Store as i32);
    assert_eq!(reused.encode_ms, 0.0);
    assert_eq!(served(&masks(on_b.ask(prompt(1)).await)), expected);
    let encodes = metric(&b.scrape(), "mobilesam_encode_duration_seconds_count");
    assert_eq!(encodes, 0.0, "B never encoded");
}

/// One unary gRPC-web call over HTTP/1.1; returns the first message's bytes.
fn grpc_web(server: &Server, method: &str, request: &impl Message) -> Vec<u8> {
    let payload = request.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    let mut stream = TcpStream::connect(server.grpc).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let head = format!(
        "POST /mobilesam.v1.SegmentAnything/{method} HTTP/1.1\r\nhost: localhost\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
         accept: application/grpc-web+proto\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(&body).expect("send body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut data = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        data = dechunk(&data);
    }
    assert_eq!(data.first(), Some(&0), "a message frame first: {head}");
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    data[5..5 + len].to_vec()
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}
