//! The shared embedding store (issue 17), end to end: real `mobilesam serve` replicas on
//! loopback sharing one real `redis-server` (the Debian package, started here on a free
//! loopback port; `tests/run.sh` installs it).
//!
//! - replicas resume each other's sessions (encode_ms 0, byte-identical masks) and reuse
//!   each other's embeddings by content (source STORE, no encode); open by digest;
//! - the store killed and restarted mid-test, a replica SIGKILLed; garbage and
//!   wrong-model values are misses and get overwritten;
//! - `mobilesam embed --data --store` precomputes a folder, then a server opens it
//!   without encoding;
//! - f16 storage keeps masks (IoU >= 0.99, score within 5e-3 of f32) on the fixtures.

use crate::server_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mobilesam_checkpoint::digest::sha256_hex;
use mobilesam_checkpoint::digest::Sha256Digest;
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_proto::v1::EmbeddingSource;
use mobilesam_server::store::value;
use mobilesam_server::store::{HostEmbedding, ModelId, StoreDtype};
use server_support::redis::{Redis, STORE_WAIT};
use server_support::{checkpoint, error, masks, metric, png, ready, Launch, Server, Stream};

/// The identity the servers store embeddings under.
fn model_id() -> ModelId {
    ModelId::new(
        Sha256Digest::of_file(checkpoint())
            .expect("hash the checkpoint")
            .to_string(),
    )
}

fn store_args(url: &str) -> Vec<String> {
    vec!["--embedding-store".into(), url.into()]
}

async fn start(args: Vec<String>) -> Server {
    Server::launch(Launch {
        args,
        ..Launch::default()
    })
    .await
}

fn encodes(server: &Server) -> f64 {
    metric(&server.scrape(), "mobilesam_encode_duration_seconds_count")
}

fn lookups(server: &Server, source: &str) -> f64 {
    metric(
        &server.scrape(),
        &format!("mobilesam_embedding_lookups_total{{source=\"{source}\"}}"),
    )
}

async fn wait_metric(server: &Server, key: &str, want: f64) {
    let deadline = Instant::now() + STORE_WAIT;
    while metric(&server.scrape(), key) != want {
        assert!(
            Instant::now() < deadline,
            "{key} never became {want}: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn set_image(image: Vec<u8>, session_id: &str, image_sha256: &str) -> Req {
    Req::SetImage(v1::SetImage {
        image,
        session_id: session_id.into(),
        image_sha256: image_sha256.into(),
        ..Default::default()
    })
}

/// Three clicks and a box, three masks each: enough to compare masks in detail.
fn prompt(request_id: u64) -> v1::Prompt {
    let click = |x, y, label| v1::Point { x, y, label };
    v1::Prompt {
        request_id,
        objects: vec![
            v1::ObjectPrompt {
                points: vec![click(20.0, 14.0, 1), click(50.0, 30.0, 0)],
                ..Default::default()
            },
            v1::ObjectPrompt {
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

/// Opens a stream, sends `request` and returns the stream and its `ImageReady`.
async fn open(server: &Server, request: Req) -> (Stream, v1::ImageReady) {
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    stream.send(request).await;
    let answer = ready(stream.recv().await);
    (stream, answer)
}

/// The masks of [`prompt`] on a stream's current image.
async fn objects(stream: &mut Stream) -> Vec<v1::ObjectMasks> {
    masks(stream.ask(prompt(7)).await).objects
}

/// Two replicas and a fresh third on one store: sessions resume anywhere, the same bytes
/// are encoded once for all replicas, images open by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_sessions_and_embeddings() {
    let redis = Redis::start();
    let url = redis.url(0);
    let (a, b, c) = tokio::join!(
        start(store_args(&url)),
        start(store_args(&url)),
        start(store_args(&url))
    );
    assert_eq!(metric(&a.scrape(), "mobilesam_embedding_store_up"), 1.0);
    let image = png(64, 48, 0);
    let digest = sha256_hex(&image);

    // A encodes: the answer names the content address.
    let (mut on_a, opened) = open(&a, set_image(image.clone(), "", "")).await;
    assert_eq!(opened.source, EmbeddingSource::Encoded as i32);
    assert!(opened.encode_ms > 0.0);
    assert_eq!(opened.image_sha256, digest);
    assert_eq!((opened.width, opened.height), (64, 48));
    let expected = objects(&mut on_a).await;
    let session = opened.session_id.clone();
    // The writes are asynchronous: wait until they landed.
    let model = model_id();
    redis.wait_for(0, &model.embedding_key(&digest), |v| {
        value::decode(v, &model, &digest).is_ok()
    });
    redis.wait_for(0, &format!("mobilesam:session:{session}"), |_| true);

    // B resumes A's session by id alone: from the store, no encode, identical masks.
    let (mut on_b, resumed) = open(&b, set_image(Vec::new(), &session, "")).await;
    assert_eq!(resumed.source, EmbeddingSource::Store as i32);
    assert_eq!(resumed.encode_ms, 0.0);
    assert_eq!(resumed.image_sha256, digest);
    assert_eq!((resumed.width, resumed.height), (64, 48));
    assert_eq!(objects(&mut on_b).await, expected);
    assert_eq!(encodes(&b), 0.0);

    // The same bytes on C come from the store; C never encodes.
    let (mut on_c, same) = open(&c, set_image(image.clone(), "", "")).await;
    assert_eq!(same.source, EmbeddingSource::Store as i32);
    assert_eq!(same.encode_ms, 0.0);
    assert_ne!(same.session_id, session);
    assert_eq!(objects(&mut on_c).await, expected);
    assert_eq!(encodes(&c), 0.0);
    assert_eq!(lookups(&c, "store"), 1.0);

    // On A the same bytes again are in memory: one encode in all.
    let (_, again) = open(&a, set_image(image.clone(), "", "")).await;
    assert_eq!(again.source, EmbeddingSource::LocalCache as i32);
    assert_eq!(encodes(&a), 1.0);

    // Open by digest (uppercase accepted), over the stream and over unary.
    let (mut by_digest, opened) = open(&a, set_image(Vec::new(), "", &digest.to_uppercase())).await;
    assert_eq!(opened.source, EmbeddingSource::LocalCache as i32);
    assert_eq!(objects(&mut by_digest).await, expected);
    let mut unary = c.client().await;
    let answer = unary
        .set_image(v1::SetImage {
            image_sha256: digest.clone(),
            ..Default::default()
        })
        .await
        .expect("unary SetImage by digest")
        .into_inner();
    assert_eq!(answer.image_sha256, digest);
    // Unary Predict on a replica that never saw the session: resumed from the store.
    let predicted = b
        .client()
        .await
        .predict(v1::PredictRequest {
            session_id: answer.session_id.clone(),
            prompt: Some(prompt(9)),
        })
        .await
        .expect("Predict on another replica")
        .into_inner();
    assert_eq!(predicted.objects, expected);

    // Unknown and malformed digests.
    let unknown = sha256_hex(b"never uploaded");
    let mut stream = Stream::open(&mut a.client().await).await;
    stream.send(set_image(Vec::new(), "", &unknown)).await;
    let missing = error(stream.recv().await);
    assert_eq!(missing.code, tonic::Code::NotFound as i32, "{missing:?}");
    stream.send(set_image(Vec::new(), "", "abc")).await;
    let malformed = error(stream.recv().await);
    assert_eq!(malformed.code, tonic::Code::InvalidArgument as i32);
    let status = unary
        .set_image(v1::SetImage {
            image_sha256: unknown,
            ..Default::default()
        })
        .await
        .expect_err("unknown digest");
    assert_eq!(status.code(), tonic::Code::NotFound);
    // A session nobody opened is still NOT_FOUND, here and in the store.
    stream.send(set_image(Vec::new(), "nobody", "")).await;
    assert_eq!(
        error(stream.recv().await).code,
        tonic::Code::NotFound as i32
    );
}

/// The store killed and restarted under a serving replica, a replica SIGKILLed, and
/// garbage or another model's values planted in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_failures_never_fail_a_request() {
    let mut redis = Redis::start();
    let url = redis.url(0);
    let (mut a, b) = tokio::join!(start(store_args(&url)), start(store_args(&url)));
    let model = model_id();

    // The store goes away: requests are answered all the same, the gauge says 0, and the
    // change is logged once.
    redis.kill();
    let (mut on_a, opened) = open(&a, set_image(png(40, 30, 1), "", "")).await;
    assert_eq!(opened.source, EmbeddingSource::Encoded as i32);
    assert!(!objects(&mut on_a).await.is_empty());
    on_a.send(set_image(Vec::new(), "unknown-session", ""))
        .await;
    assert_eq!(error(on_a.recv().await).code, tonic::Code::NotFound as i32);
    wait_metric(&a, "mobilesam_embedding_store_up", 0.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down_logs = a.log_text().matches("embedding store unreachable").count();
    assert_eq!(down_logs, 1, "{}", a.log_text());
    assert_eq!(
        b.health("").await.expect("health"),
        1,
        "health stays SERVING"
    );

    // It comes back: the replica uses it again.
    redis.restart();
    wait_metric(&a, "mobilesam_embedding_store_up", 1.0).await;
    let image = png(40, 30, 2);
    let digest = sha256_hex(&image);
    let (mut on_a, opened) = open(&a, set_image(image, "kept-session", "")).await;
    assert_eq!(opened.source, EmbeddingSource::Encoded as i32);
    let expected = objects(&mut on_a).await;
    redis.wait_for(0, &model.embedding_key(&digest), |v| {
        value::decode(v, &model, &digest).is_ok()
    });
    redis.wait_for(0, "mobilesam:session:kept-session", |_| true);

    // A dies hard: its client resumes on B without sending the image again.
    a.child.kill().expect("SIGKILL A");
    let _ = a.child.wait();
    let ended = on_a.next().await;
    assert!(!matches!(ended, Ok(Some(_))), "A's stream ends: {ended:?}");
    let (mut on_b, resumed) = open(&b, set_image(Vec::new(), "kept-session", "")).await;
    assert_eq!(resumed.source, EmbeddingSource::Store as i32);
    assert_eq!(resumed.encode_ms, 0.0);
    assert_eq!(objects(&mut on_b).await, expected);
    assert_eq!(encodes(&b), 0.0);

    // Garbage and another model's embedding under real keys: misses, encoded, replaced.
    let garbage = png(40, 30, 3);
    let foreign = png(40, 30, 4);
    let (garbage_digest, foreign_digest) = (sha256_hex(&garbage), sha256_hex(&foreign));
    redis.set(
        0,
        &model.embedding_key(&garbage_digest),
        b"not an embedding",
    );
    let other_model = ModelId::new(sha256_hex(b"other weights"));
    let fake = HostEmbedding {
        channels: 256,
        original_size: (30, 40),
        input_size: (768, 1024),
        values: vec![0.5; mobilesam_model::Embedding::VALUES],
        high_res: None,
    };
    redis.set(
        0,
        &model.embedding_key(&foreign_digest),
        &value::encode(&fake, &other_model, &foreign_digest, StoreDtype::F32),
    );
    for (image, digest) in [(garbage, &garbage_digest), (foreign, &foreign_digest)] {
        let (mut stream, opened) = open(&b, set_image(image, "", "")).await;
        assert_eq!(opened.source, EmbeddingSource::Encoded as i32);
        assert!(!objects(&mut stream).await.is_empty());
        redis.wait_for(0, &model.embedding_key(digest), |v| {
            value::decode(v, &model, digest).is_ok()
        });
    }
    assert_eq!(encodes(&b), 2.0);
    // A garbage session record is a miss too.
    redis.set(0, "mobilesam:session:broken", b"\xff\x00garbage");
    let mut stream = Stream::open(&mut b.client().await).await;
    stream.send(set_image(Vec::new(), "broken", "")).await;
    assert_eq!(
        error(stream.recv().await).code,
        tonic::Code::NotFound as i32
    );
}

/// Runs `mobilesam embed` with `args`; returns (success, stderr).
fn embed(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilesam"))
        .arg("embed")
        .arg("--checkpoint")
        .arg(checkpoint())
        .args(args)
        .env_remove("MOBILESAM_EMBEDDING_STORE")
        .stdin(Stdio::null())
        .output()
        .expect("run mobilesam embed");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.success(), stderr)
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `mobilesam embed --data --store` fills the store (bad images reported and skipped,
/// stored ones skipped on a second run), then a server opens those images with no encode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn precomputed_images_open_without_encoding() {
    let redis = Redis::start();
    let url = redis.url(0);
    let data = server_support::temp_dir();
    let images = [png(64, 48, 5), png(48, 64, 6)];
    for (i, image) in images.iter().enumerate() {
        std::fs::write(data.path().join(format!("image{i}.png")), image).expect("write");
    }
    std::fs::write(data.path().join("broken.png"), b"\x89PNG but not really").expect("write");
    std::fs::write(data.path().join("notes.txt"), b"not an image").expect("write");

    let (ok, stderr) = embed(&[
        "--data",
        arg(data.path()),
        "--store",
        &url,
        "--workers",
        "2",
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("broken.png"), "{stderr}");
    assert!(
        stderr.contains("encoded 2, skipped 0 (already stored), failed 1"),
        "{stderr}"
    );
    // Interrupted or not, a second run only does what is missing.
    let (ok, stderr) = embed(&["--data", arg(data.path()), "--store", &url]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("encoded 0, skipped 2 (already stored), failed 1"),
        "{stderr}"
    );
    // A store that is not there is a one-line error.
    let (ok, stderr) = embed(&["--data", arg(data.path()), "--store", "redis://127.0.0.1:1"]);
    assert!(!ok);
    assert!(stderr.contains("does not answer"), "{stderr}");

    let server = start(store_args(&url)).await;
    let (mut first, opened) =
        open(&server, set_image(Vec::new(), "", &sha256_hex(&images[0]))).await;
    assert_eq!(opened.source, EmbeddingSource::Store as i32);
    assert_eq!((opened.width, opened.height), (64, 48));
    assert!(!objects(&mut first).await.is_empty());
    let (_, opened) = open(&server, set_image(images[1].clone(), "", "")).await;
    assert_eq!(opened.source, EmbeddingSource::Store as i32);
    assert_eq!((opened.width, opened.height), (48, 64));
    assert_eq!(encodes(&server), 0.0);
}

/// Stored at f16, an embedding gives the masks of f32: IoU >= 0.99 and scores within
/// 5e-3, on the fixture photographs with the seeded weights (in process: the value format
/// of the store, then the decoder).
#[test]
fn f16_storage_keeps_masks() {
    use mobilesam_model::masks::{BinaryMask, Rle};
    use mobilesam_model::{BoxPrompt, DecodeOptions, ObjectPrompt, Point, Sam};

    let sam = Sam::from_checkpoint(&server_support::seeded(), &candle_core::Device::Cpu)
        .expect("seeded model");
    let model = model_id();
    let options = DecodeOptions {
        multimask: true,
        return_low_res_logits: false,
        return_polygons: false,
    };
    let (mut worst_iou, mut worst_score) = (1.0f64, 0.0f32);
    for name in ["chelsea.png", "coffee.png"] {
        let path = server_support::workspace()
            .join("tests/fixtures/images")
            .join(name);
        let image = mobilesam_model::image::read_image(&path, u64::MAX).expect("fixture");
        let (w, h) = (image.width() as f32, image.height() as f32);
        let embedding = sam.embed(&image).expect("embed");
        let host = embedding.to_host().expect("host values");
        let bytes = value::encode(&host, &model, "f16", StoreDtype::F16);
        let back = value::decode(&bytes, &model, "f16").expect("decode f16");
        let half = mobilesam_model::Embedding::from_host(back, &candle_core::Device::Cpu)
            .expect("rebuild");
        let mut prompts = Vec::new();
        for (fx, fy) in [(0.3, 0.3), (0.5, 0.5), (0.7, 0.6), (0.4, 0.8)] {
            prompts.push(ObjectPrompt {
                points: vec![Point {
                    x: w * fx,
                    y: h * fy,
                    label: 1,
                }],
                bbox: None,
                mask_input: None,
            });
        }
        prompts.push(ObjectPrompt {
            points: Vec::new(),
            bbox: Some(BoxPrompt {
                x1: w * 0.2,
                y1: h * 0.2,
                x2: w * 0.8,
                y2: h * 0.9,
            }),
            mask_input: None,
        });
        let full = sam
            .decode(&embedding, &prompts, options)
            .expect("decode f32");
        let reduced = sam.decode(&half, &prompts, options).expect("decode f16");
        let mask = |rle: &Rle| BinaryMask::from_rle(rle).expect("rle");
        for (a, b) in full.iter().zip(&reduced) {
            for (ma, mb) in a.masks.iter().zip(&b.masks) {
                worst_iou = worst_iou.min(mask(&ma.rle).iou(&mask(&mb.rle)));
                worst_score = worst_score.max((ma.score - mb.score).abs());
            }
        }
    }
    println!("f16 vs f32: worst mask IoU {worst_iou:.5}, worst score difference {worst_score:.2e}");
    assert!(worst_iou >= 0.99, "mask IoU {worst_iou}");
    assert!(worst_score <= 5e-3, "score difference {worst_score}");
}
