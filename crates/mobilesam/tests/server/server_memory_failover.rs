//! A SAM 2.1 session's tracking state outlives its replica (issue 29, docs/tracking.md
//! "State in the store"): two `mobilesam serve` replicas share a real `redis-server`;
//! replica A tracks an object from a prompt on frame 0 over the first frames and is then
//! SIGKILLed mid-clip; replica B, given `SetImage{session_id, frame_index, image}` of the
//! next frames, answers the masks the library's uninterrupted tracker gives, byte for byte,
//! and a revisited earlier frame from A's stored result without model work. CloseSession
//! deletes the stored state.
//!
//! The server and library helpers (the rescaled SAM 2.1 fixture, the clip) are
//! `server_memory_tracking.rs`'s.

use crate::server_memory_tracking::{
    answered, click, decodes, png_of, rescaled_checkpoint, serve, set_frame, tracked, wire_prompt,
    Library, CLICK,
};
use crate::server_support;

use std::time::{Duration, Instant};

use mobilesam_checkpoint::digest::Sha256Digest;
use mobilesam_model::video::{Direction, ObjectTracker};
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_server::store::ModelId;
use mobilesam_server::tracking::memory::stored;
use server_support::redis::{Redis, STORE_WAIT};
use server_support::{masks, ready, Stream};

/// Frames tracked on replica A after the prompt on frame 0.
const ON_A: usize = 3;
/// Frames tracked on replica B after A died.
const ON_B: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_carries_on_on_another_replica_when_its_replica_dies() {
    let redis = Redis::start();
    let url = redis.url(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ["--embedding-store", url.as_str()];
    let (mut a, checkpoint) = serve(dir.path(), &store).await;
    let (b, _) = serve(dir.path(), &store).await;
    let sha = Sha256Digest::of_file(&checkpoint)
        .expect("hash the checkpoint")
        .to_string();
    let model = ModelId::new(sha.clone());
    let mut lib = Library::new(&rescaled_checkpoint());
    let frames: Vec<Vec<u8>> = lib.frames.iter().map(png_of).collect();
    let mut tracker = ObjectTracker::new(None);

    // Replica A: the prompt on frame 0, then frames 1..=ON_A.
    let mut client_a = a.client().await;
    let mut on_a = Stream::open(&mut client_a).await;
    let session = ready(set_frame(&mut on_a, &frames, 0).await).session_id;
    let answer = masks(on_a.ask(wire_prompt(1, 7, CLICK)).await);
    let want = lib.prompt(&mut tracker, 0, &click(CLICK.0, CLICK.1));
    assert_eq!(answered(&answer.objects[0]), want, "the prompt's mask");
    let mut on_a_masks = vec![want];
    for t in 1..=ON_A {
        let start = (t == 1).then_some((0, Direction::Forward));
        let want = lib.track(&mut tracker, t, start);
        let got = tracked(set_frame(&mut on_a, &frames, t).await, t);
        assert_eq!(got, want, "frame {t} on A");
        on_a_masks.push(got);
    }

    // The state of frame ON_A lands in the store (written in the background).
    let key = model.tracks_key(&session);
    let started = Instant::now();
    let value = redis.wait_for(0, &key, |v| {
        stored::decode(v, &sha).is_ok_and(|objects| {
            objects
                .get(&7)
                .is_some_and(|o| (0..=ON_A).all(|t| o.results.contains_key(&t)))
        })
    });
    let objects = stored::decode(&value, &sha).expect("the stored state");
    let memories: usize = objects.values().map(|o| o.tracker.state().bytes()).sum();
    let rle: usize = objects
        .values()
        .flat_map(|o| o.results.values())
        .map(|r| r.mask.rle.counts.len())
        .sum();
    eprintln!(
        "tracking state after {} frames, one object: {} bytes ({memories} of tracker \
         memories, {rle} of RLE), landed within {:?}",
        ON_A + 1,
        value.len(),
        started.elapsed()
    );

    // A dies mid-clip.
    a.child.kill().expect("SIGKILL A");
    let _ = a.child.wait();

    // Replica B carries the session on from the next frame.
    let mut client_b = b.client().await;
    let mut on_b = Stream::open(&mut client_b).await;
    assert!(
        frames.len() > ON_A + ON_B,
        "the clip covers both replicas' frames"
    );
    for (t, frame) in frames.iter().enumerate().skip(ON_A + 1).take(ON_B) {
        let want = lib.track(&mut tracker, t, None);
        on_b.send(Req::SetImage(v1::SetImage {
            image: frame.clone(),
            session_id: session.clone(),
            frame_index: Some(t as i64),
            ..Default::default()
        }))
        .await;
        let got = tracked(on_b.recv().await, t);
        assert_eq!(got, want, "frame {t} on B");
        assert!(!got.1, "frame {t} is visible");
    }

    // A frame tracked on A is answered from the stored result, with no model work.
    let before = decodes(&b);
    let again = tracked(set_frame(&mut on_b, &frames, 2).await, 2);
    assert_eq!(again, on_a_masks[2], "frame 2 as A answered it");
    assert_eq!(decodes(&b), before, "a revisit runs no decode");

    // CloseSession deletes the stored state.
    let closed = client_b
        .close_session(v1::CloseSessionRequest {
            session_id: session.clone(),
        })
        .await
        .expect("CloseSession")
        .into_inner();
    assert!(closed.closed);
    let deadline = Instant::now() + STORE_WAIT;
    while redis.get(0, &key).is_some() {
        assert!(Instant::now() < deadline, "{key} outlived CloseSession");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
