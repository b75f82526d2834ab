//! Faults, end to end against the real `mobilesam serve` on a loopback port: a client
//! that vanishes during an encode, a worker panic, and ten thousand sessions against a
//! small session cache. (SIGTERM under load is `server_grpc`'s drain test.)
//!
//! The faults come from the server's debug-build test variables (see the server crate's
//! `fault_injection`): a panic on a chosen image width, a slow encode, and a stub
//! encoder that makes an encode cost a 4 MiB fill instead of a model run.

use crate::server_support;

use std::time::{Duration, Instant};

use server_support::{error, image_request, masks, metric, png, ready, Launch, Server, Stream};
use tonic::Code;

/// Waits until `condition` holds on a scrape, failing after `timeout`.
async fn wait_for(
    server: &Server,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&std::collections::HashMap<String, f64>) -> bool,
) -> std::collections::HashMap<String, f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let metrics = server.scrape();
        if condition(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "{what}: {metrics:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that disconnects while its image is being encoded loses the result (nothing
/// is cached for it), a client that disconnects while its encode is queued has the job
/// dropped unrun, no stream is left open, and the server serves the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_vanishing_during_an_encode_leave_nothing_behind() {
    let server = Server::launch(
        Launch::args(&[])
            .env("MOBILESAM_TEST_STUB_ENCODER", "1")
            .env("MOBILESAM_TEST_ENCODE_DELAY_MS", "1500"),
    )
    .await;

    // Client A: its encode runs on the only worker.
    let mut a_client = server.client().await;
    let a = Stream::open(&mut a_client).await;
    a.send(image_request(png(32, 24, 0))).await;
    wait_for(&server, "A's encode taken", Duration::from_secs(30), |m| {
        metric(
            m,
            "mobilesam_queue_wait_seconds_count{queue=\"encode\",lane=\"encode\"}",
        ) == 1.0
    })
    .await;
    // Client B: its encode waits in the queue.
    let mut b_client = server.client().await;
    let b = Stream::open(&mut b_client).await;
    b.send(image_request(png(32, 24, 1))).await;
    wait_for(&server, "B's encode queued", Duration::from_secs(30), |m| {
        metric(m, "mobilesam_queue_depth{queue=\"encode\"}") == 1.0
    })
    .await;
    assert_eq!(
        metric(&server.scrape(), "mobilesam_encode_duration_seconds_count"),
        0.0,
        "A's encode must still be running when both clients leave"
    );
    // Both connections go away (streams, clients and their channels dropped).
    drop((a, a_client, b, b_client));

    let metrics = wait_for(
        &server,
        "the worker idle again",
        Duration::from_secs(60),
        |m| {
            metric(m, "mobilesam_encode_duration_seconds_count") == 1.0
                && metric(m, "mobilesam_jobs_cancelled_total{queue=\"encode\"}") == 1.0
                && metric(m, "mobilesam_active_streams") == 0.0
        },
    )
    .await;
    // A's finished encode was not cached; B's never ran; nothing is queued.
    assert_eq!(metric(&metrics, "mobilesam_sessions"), 0.0, "{metrics:?}");
    assert_eq!(metric(&metrics, "mobilesam_session_cache_bytes"), 0.0);
    assert_eq!(
        metric(&metrics, "mobilesam_queue_depth{queue=\"encode\"}"),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "mobilesam_requests_total{kind=\"set_image\",code=\"OK\"}"
        ),
        0.0
    );

    // The next client is served.
    let mut client = server.client().await;
    let mut c = Stream::open(&mut client).await;
    let image = ready(c.set_image(png(20, 16, 2)).await);
    assert_eq!((image.width, image.height), (20, 16));
    assert_eq!(masks(c.prompt(5).await).request_id, 5);
    assert_eq!(metric(&server.scrape(), "mobilesam_sessions"), 1.0);
}

/// A panic inside a worker answers that request INTERNAL; the stream stays open, health
/// stays SERVING, the encode worker (the only one) replaces its model and serves the next image
/// and prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_panic_is_answered_internal_and_the_worker_goes_on() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let server = Server::launch(
        Launch::args(&[])
            .env("MOBILESAM_TEST_STUB_ENCODER", "1")
            .env("MOBILESAM_TEST_PANIC_ON_IMAGE_WIDTH", "13"),
    )
    .await;
    assert!(server.log_text().contains("fault injection is on"));
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;

    let failed = error(stream.set_image(png(13, 9, 0)).await);
    assert_eq!(failed.code, Code::Internal as i32, "{failed:?}");
    assert!(
        failed.message.contains("failed inside the server"),
        "{failed:?}"
    );

    for service in ["", "mobilesam.v1.SegmentAnything"] {
        assert_eq!(
            server.health(service).await.expect("health"),
            ServingStatus::Serving as i32
        );
    }
    let image = ready(stream.set_image(png(20, 16, 0)).await);
    assert_eq!((image.width, image.height), (20, 16));
    assert_eq!(masks(stream.prompt(8).await).request_id, 8);
    // And again: a second panic, then a second recovery, on the same worker.
    let failed = error(stream.set_image(png(13, 30, 1)).await);
    assert_eq!(failed.code, Code::Internal as i32);
    // Prompts run on the decode lane, so they do not show that the encode worker recovered:
    // the next image does (the worker takes it only after replacing its model).
    let image = ready(stream.set_image(png(20, 16, 1)).await);
    assert_eq!((image.width, image.height), (20, 16));
    assert_eq!(masks(stream.prompt(9).await).request_id, 9);

    let metrics = server.scrape();
    assert_eq!(
        metric(&metrics, "mobilesam_worker_panics_total{job=\"encode\"}"),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "mobilesam_requests_total{kind=\"set_image\",code=\"INTERNAL\"}"
        ),
        2.0
    );
    assert_eq!(metric(&metrics, "mobilesam_worker_restarts_total"), 2.0);
    // Every lane's workers hold a model and count: one each of decode, encode (`--workers
    // 1`) and generate. The one that panicked is ready again.
    assert_eq!(metric(&metrics, "mobilesam_workers_ready"), 3.0);
    let logs = server.log_text();
    assert!(logs.contains("encode panicked"), "{logs}");
    assert!(
        logs.contains("worker replaced its model after a panic"),
        "{logs}"
    );
}

/// Sessions made by the test below.
const SESSIONS: usize = 10_000;
/// Streams making them at once.
const CONCURRENCY: usize = 8;
/// The session cache: room for 16 embeddings (4 MiB each) by bytes, 12 by count.
const CACHE_BYTES: u64 = 64 << 20;
const MAX_SESSIONS: usize = 12;

/// Opens a stream, sends one image, returns the new session's id.
async fn new_session(
    client: &mut mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient<
        tonic::transport::Channel,
    >,
    variant: u32,
) -> String {
    let mut stream = Stream::open(client).await;
    ready(stream.set_image(png(8, 6, variant % 4)).await).session_id
}

/// Ten thousand sessions against a cache of twelve: the caps hold after every insert,
/// every eviction is counted, the server's memory stays flat, evicted sessions answer
/// NOT_FOUND and the most recent ones resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_against_a_small_cache_stay_bounded() {
    let server = Server::launch(
        Launch::args(&[
            "--workers",
            "2",
            "--session-cache-bytes",
            &CACHE_BYTES.to_string(),
            "--max-sessions",
            &MAX_SESSIONS.to_string(),
        ])
        .env("MOBILESAM_TEST_STUB_ENCODER", "1"),
    )
    .await;
    let started = Instant::now();
    let mut client = server.client().await;
    let first = new_session(&mut client, 0).await;
    // Warm up: fill the cache and the allocator before the baseline.
    for i in 1..100 {
        new_session(&mut client, i).await;
    }
    let baseline_rss = server.rss_bytes();

    let mut tasks = Vec::new();
    for task in 0..CONCURRENCY {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut made = 0;
            for i in (100 + task..SESSIONS - 1).step_by(CONCURRENCY) {
                new_session(&mut client, i as u32).await;
                made += 1;
            }
            made
        }));
    }
    let mut peak_rss = baseline_rss;
    let mut made = 100;
    for task in tasks {
        made += task.await.expect("session task");
        peak_rss = peak_rss.max(server.rss_bytes());
    }
    // The last one alone, so it is surely among the most recent.
    let last = new_session(&mut client, 3).await;
    made += 1;
    assert_eq!(made, SESSIONS);
    let elapsed = started.elapsed();
    let final_rss = server.rss_bytes();
    eprintln!(
        "{SESSIONS} sessions in {:.1} s; RSS baseline {} MiB, peak seen {} MiB, final {} MiB",
        elapsed.as_secs_f64(),
        baseline_rss >> 20,
        peak_rss >> 20,
        final_rss >> 20
    );

    let metrics = server.scrape();
    let cached = metric(&metrics, "mobilesam_sessions");
    assert_eq!(cached, MAX_SESSIONS as f64, "{metrics:?}");
    assert!(metric(&metrics, "mobilesam_session_cache_bytes") <= CACHE_BYTES as f64);
    assert_eq!(
        metric(
            &metrics,
            "mobilesam_session_evictions_total{reason=\"capacity\"}"
        ),
        SESSIONS as f64 - cached,
        "every session beyond the cap was evicted and counted"
    );
    assert_eq!(
        metric(
            &metrics,
            "mobilesam_requests_total{kind=\"set_image\",code=\"OK\"}"
        ),
        SESSIONS as f64
    );
    // 10,000 embeddings are 39 GiB; the server must hold about the cache's worth.
    let growth = final_rss.saturating_sub(baseline_rss);
    assert!(
        growth < 256 << 20,
        "RSS grew by {} MiB (baseline {} MiB, final {} MiB)",
        growth >> 20,
        baseline_rss >> 20,
        final_rss >> 20
    );

    let mut stream = Stream::open(&mut client).await;
    let evicted = error(stream.resume(&first).await);
    assert_eq!(evicted.code, Code::NotFound as i32);
    assert!(
        evicted.message.contains("send the image again"),
        "{evicted:?}"
    );
    let resumed = ready(stream.resume(&last).await);
    assert_eq!((resumed.width, resumed.encode_ms), (8, 0.0));
    assert_eq!(masks(stream.prompt(1).await).request_id, 1);
}
