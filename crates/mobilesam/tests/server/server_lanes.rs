//! The scheduler's lanes through the real `mobilesam serve` on loopback (issue 13): a
//! prompt never waits in a queue behind an encode or a generation (lane selection), a
//! flood of prompts does not starve encodes nor generations (though they pause for the
//! prompts at the model's yield points), and the lane metrics.
//!
//! Slow encodes come from `MOBILESAM_TEST_ENCODE_DELAY_MS` (debug builds): the single
//! encode worker sleeps before each encode, which holds the encode lane busy without
//! holding a CPU.

use crate::server_support;

use std::time::Duration;

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_proto::v1::segment_response::Response as Resp;
use server_support::{
    click, image_request, masks, metric, png, ready, Launch, Server, Stream, ANSWER_TIMEOUT,
};

/// Each encode sleeps this long first.
const ENCODE_DELAY_MS: u64 = 2_000;

/// A small generation: a few seconds on CPU.
fn small_generation(request_id: u64) -> Req {
    Req::GenerateMasks(v1::GenerateMasks {
        request_id,
        params: Some(v1::GenerateParams {
            points_per_side: Some(4),
            pred_iou_thresh: Some(0.0),
            stability_score_thresh: Some(0.0),
            ..Default::default()
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_do_not_wait_behind_encodes() {
    let server = Server::launch(Launch::args(&["--workers", "1"]).env(
        "MOBILESAM_TEST_ENCODE_DELAY_MS",
        ENCODE_DELAY_MS.to_string(),
    ))
    .await;
    let mut client = server.client().await;
    let mut clicker = Stream::open(&mut client).await;
    let session = ready(clicker.set_image(png(64, 48, 1)).await).session_id;

    // The only encode worker is now busy for ENCODE_DELAY_MS with another client's image.
    let mut uploader = Stream::open(&mut client).await;
    uploader.send(image_request(png(64, 48, 2))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Prompts on the cached session are answered while that encode is still running.
    let mut upload_done = Box::pin(uploader.recv());
    for request_id in 1..=3 {
        let answer = tokio::select! {
            answer = clicker.prompt(request_id) => answer,
            done = &mut upload_done => panic!("the encode finished before prompt {request_id}: {done:?}"),
        };
        assert_eq!(masks(answer).request_id, request_id);
    }
    assert!(!ready(upload_done.await).session_id.is_empty());
    assert_ne!(session, "");

    // The waits show per lane.
    let scraped = server.scrape();
    let prompt_waits = metric(
        &scraped,
        "mobilesam_queue_wait_seconds_count{queue=\"decode\",lane=\"decode\"}",
    );
    assert!(prompt_waits >= 3.0, "{prompt_waits}");
    let encode_requests = metric(
        &scraped,
        "mobilesam_request_duration_seconds_count{kind=\"set_image\",lane=\"encode\"}",
    );
    assert!(encode_requests >= 2.0, "{encode_requests}");
}

/// Four streams keep the decode lane full; an encode and a generation still finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_prompts_starves_neither_encodes_nor_generations() {
    let server = Server::start(&["--workers", "1", "--queue-capacity", "8"]).await;
    let mut client = server.client().await;
    let mut first = Stream::open(&mut client).await;
    let session = ready(first.set_image(png(64, 48, 3)).await).session_id;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for stream in 0..4u64 {
        let (mut client, session, stop) = (client.clone(), session.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            let mut s = Stream::open(&mut client).await;
            let _ = ready(s.resume(&session).await);
            let mut answered = 0u64;
            let mut id = stream << 32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Eight in flight per stream: more than the decode lane takes.
                for _ in 0..8 {
                    id += 1;
                    s.send(Req::Prompt(click(id))).await;
                }
                for _ in 0..8 {
                    if matches!(s.recv().await, Resp::Masks(_)) {
                        answered += 1;
                    }
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut uploader = Stream::open(&mut client).await;
    let encoded = tokio::time::timeout(ANSWER_TIMEOUT, uploader.set_image(png(64, 48, 4)))
        .await
        .expect("the encode finished during the flood");
    assert!(!ready(encoded).session_id.is_empty());
    uploader.send(small_generation(9)).await;
    let summary = loop {
        match uploader.recv().await {
            Resp::GeneratedMask(_) => {}
            Resp::GenerateSummary(summary) => break summary,
            other => panic!("unexpected answer {other:?}"),
        }
    };
    assert_eq!(summary.request_id, 9);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for stream in flood {
        answered += stream.await.expect("flood stream");
    }
    assert!(answered > 0);
    let scraped = server.scrape();
    assert!(
        metric(
            &scraped,
            "mobilesam_request_duration_seconds_count{kind=\"generate\",lane=\"generate\"}"
        ) >= 1.0
    );
    // The encode and the generation paused for the decodes at the model's yield points,
    // within the pause bound, and still finished.
    for lane in ["encode", "generate"] {
        let pauses = metric(
            &scraped,
            &format!("mobilesam_yield_pause_seconds_count{{lane=\"{lane}\"}}"),
        );
        assert!(pauses >= 1.0, "{lane} lane: {pauses} pauses");
    }
}
