//! `SetImage.prefetch` and `SetImage.frame_index` on the real server: prefetched images open
//! by digest without an encode, a prefetch answers outside the request order, bad ones are
//! refused on their own, and frames are numbered per session.

use std::time::Duration;

use mobilesam_checkpoint::digest::sha256_hex;
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_proto::v1::segment_response::Response as Resp;
use mobilesam_proto::v1::EmbeddingSource;
use mobilesam_server::fault_injection::ENCODE_DELAY_MS;
use tonic::Code;

use crate::server_support::{click, error, masks, png, ready, requests, Launch, Server, Stream};

fn prefetch(image: Vec<u8>, frame_index: Option<i64>) -> Req {
    Req::SetImage(v1::SetImage {
        image,
        prefetch: true,
        frame_index,
        ..Default::default()
    })
}

fn by_digest(image_sha256: &str, frame_index: Option<i64>) -> Req {
    Req::SetImage(v1::SetImage {
        image_sha256: image_sha256.into(),
        frame_index,
        ..Default::default()
    })
}

fn frame(image: Vec<u8>, frame_index: Option<i64>) -> Req {
    Req::SetImage(v1::SetImage {
        image,
        frame_index,
        ..Default::default()
    })
}

#[tokio::test]
async fn a_prefetched_frame_opens_by_digest_without_an_encode() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    let image = png(96, 64, 3);
    let sha = sha256_hex(&image);

    stream.send(prefetch(image.clone(), Some(5))).await;
    let answer = ready(stream.recv().await);
    assert!(answer.prefetched, "{answer:?}");
    assert_eq!(answer.image_sha256, sha);
    assert_eq!(answer.frame_index, 5);
    assert_eq!(answer.source, EmbeddingSource::Encoded as i32);
    assert!(answer.session_id.is_empty(), "a prefetch opens no session");
    assert_eq!((answer.width, answer.height), (96, 64));

    // No image yet on this stream: the prefetch did not change it.
    let no_image = error(stream.prompt(1).await);
    assert_eq!(
        no_image.code,
        Code::FailedPrecondition as i32,
        "{no_image:?}"
    );

    stream.send(by_digest(&sha, Some(6))).await;
    let opened = ready(stream.recv().await);
    assert!(!opened.prefetched);
    assert_eq!(opened.source, EmbeddingSource::LocalCache as i32);
    assert_eq!(opened.encode_ms, 0.0);
    assert_eq!(opened.frame_index, 6);
    assert_eq!(masks(stream.prompt(2).await).objects.len(), 1);

    // The same bytes again: found in memory, no second encode.
    stream.send(prefetch(image, None)).await;
    let again = ready(stream.recv().await);
    assert_eq!(again.source, EmbeddingSource::LocalCache as i32);
    assert_eq!(again.frame_index, 0);
    let scraped = server.scrape();
    assert_eq!(requests(&scraped, "prefetch", "OK"), 2.0);
    assert_eq!(
        scraped
            .get("mobilesam_encode_duration_seconds_count")
            .copied()
            .unwrap_or(0.0),
        1.0,
        "one encode for two prefetches and a SetImage by digest"
    );
}

#[tokio::test]
async fn a_prefetch_answers_when_done_without_holding_back_prompts() {
    let server =
        Server::launch(Launch::args(&["--workers", "1"]).env(ENCODE_DELAY_MS, "1500")).await;
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    ready(stream.set_image(png(64, 48, 1)).await);
    stream.send(prefetch(png(64, 48, 2), Some(1))).await;
    stream.send(Req::Prompt(click(7))).await;
    // The prompt was sent after the prefetch, and is answered first.
    let first = masks(stream.recv().await);
    assert_eq!(first.request_id, 7);
    let second = ready(stream.recv().await);
    assert!(second.prefetched);
    assert_eq!(second.frame_index, 1);
}

#[tokio::test]
async fn bad_prefetches_are_refused_and_the_stream_goes_on() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    ready(stream.set_image(png(64, 48, 1)).await);

    stream.send(prefetch(Vec::new(), None)).await;
    let empty = error(stream.recv().await);
    assert_eq!(empty.code, Code::InvalidArgument as i32, "{empty:?}");
    assert!(
        empty.message.contains("prefetch needs the image bytes"),
        "{empty:?}"
    );

    let mut truncated = png(64, 48, 4);
    truncated.truncate(truncated.len() / 2);
    stream.send(prefetch(truncated, None)).await;
    let broken = error(stream.recv().await);
    assert_eq!(broken.code, Code::InvalidArgument as i32, "{broken:?}");

    stream.send(frame(png(64, 48, 5), Some(-1))).await;
    let negative = error(stream.recv().await);
    assert_eq!(negative.code, Code::InvalidArgument as i32, "{negative:?}");
    assert!(negative.message.contains("frame_index"), "{negative:?}");

    // The stream and its image are intact.
    assert_eq!(masks(stream.prompt(3).await).request_id, 3);
}

#[tokio::test]
async fn frames_are_numbered_per_session() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    let mut indices = Vec::new();
    for (variant, index) in [(1, None), (2, None), (3, Some(10)), (4, None), (5, Some(2))] {
        stream.send(frame(png(48, 32, variant), index)).await;
        let answer = ready(stream.recv().await);
        indices.push(answer.frame_index);
    }
    assert_eq!(indices, [0, 1, 10, 11, 2]);

    // Resuming keeps the session's frame index.
    let session_id = match stream.set_image(png(48, 32, 6)).await {
        Resp::ImageReady(r) => r.session_id,
        other => panic!("expected ImageReady, got {other:?}"),
    };
    let mut other = Stream::open(&mut client).await;
    let resumed = ready(other.resume(&session_id).await);
    assert_eq!(resumed.frame_index, 3);
}

#[tokio::test]
async fn unary_prefetch_then_open_by_digest() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let image = png(80, 60, 9);
    let sha = sha256_hex(&image);
    let answer = client
        .set_image(v1::SetImage {
            image,
            prefetch: true,
            frame_index: Some(4),
            ..Default::default()
        })
        .await
        .expect("prefetch")
        .into_inner();
    assert!(answer.prefetched);
    assert_eq!(answer.frame_index, 4);
    let opened = tokio::time::timeout(
        Duration::from_secs(60),
        client.set_image(v1::SetImage {
            image_sha256: sha,
            ..Default::default()
        }),
    )
    .await
    .expect("in time")
    .expect("open by digest")
    .into_inner();
    assert_eq!(opened.source, EmbeddingSource::LocalCache as i32);
    assert!(!opened.session_id.is_empty());
}
