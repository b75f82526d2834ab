//! SAM 2.1 memory tracking behind `Prompt.track` (docs/tracking.md), on the real server
//! with the reduced SAM 2.1 fixture and the video fixture's clip
//! (`tests/fixtures/sam2/video/`): the tracked masks equal `ObjectTracker` driven by the
//! library on the same frames in the same order, forward and in reverse; a revisited
//! frame is answered from the stored result without model work; a correction re-propagates
//! as the frames are streamed again; the occluded frame answers `TRACK_STATE_OCCLUDED`
//! with an empty mask and the object comes back; `--max-tracked-frames` refuses beyond it.
//!
//! The fixture's object-score head calls every frame empty, so the server is given the
//! checkpoint with the head rescaled as the fixture does (a test-only weight edit), written
//! as safetensors into a temporary directory. The helpers are shared with
//! `server_memory_failover.rs`.

use crate::server_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use mobilesam_checkpoint::Checkpoint;
use mobilesam_model::masks::upscale::upscale_stretched_to_scored_mask;
use mobilesam_model::video::{Direction, ObjectTracker, VideoModel};
use mobilesam_model::{Embedding, ObjectPrompt, Point, Sam};
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request as Req;
use mobilesam_proto::v1::segment_response::Response as Resp;
use server_support::{error, masks, metric, ready, Launch, Server, Stream};

/// The clip's side (frames are exactly 1024x1024, see the fixture's README).
const SIDE: u32 = 1024;
/// The inverted frame, where the object score falls below zero.
const OCCLUDED_FRAME: usize = 8;
/// The click of the fixture's `forward` scenario.
pub(crate) const CLICK: (f32, f32) = (520.0, 430.0);

/// The fixture's checkpoint with the object-score head's last layer rescaled as
/// `make_sam2_video_fixtures.py` does: weight x 10, (bias + 0.9) x 10.
pub(crate) fn rescaled_checkpoint() -> Checkpoint {
    let path = server_support::workspace().join("tests/fixtures/sam2/sam2.1_hiera_r_seed0.pt");
    let ckpt = Checkpoint::load(&path).expect("checkpoint");
    let head = "sam_mask_decoder.pred_obj_score_head.layers.2";
    let mut tensors = HashMap::new();
    for name in ckpt.names() {
        let shape = ckpt.shape(name).expect("shape").to_vec();
        let mut t: Tensor = ckpt.get(name, &shape).expect("tensor");
        if name == format!("{head}.weight") {
            t = (t * 10.0).expect("scale");
        } else if name == format!("{head}.bias") {
            t = ((t + 0.9).expect("shift") * 10.0).expect("scale");
        }
        tensors.insert(name.to_string(), t);
    }
    Checkpoint::from_tensors(tensors)
}

/// Frame `t` by the fixture's rule: `coffee.png` upscaled x3 by pixel repetition, cropped
/// at (300 + 8t, 60 + 5t); the occluded frame inverted.
pub(crate) fn frame(src: &image::RgbImage, t: usize) -> image::RgbImage {
    let (x0, y0) = (300 + 8 * t as u32, 60 + 5 * t as u32);
    image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let mut p = *src.get_pixel((x + x0) / 3, (y + y0) / 3);
        if t == OCCLUDED_FRAME {
            for c in &mut p.0 {
                *c = 255 - *c;
            }
        }
        p
    })
}

pub(crate) fn png_of(img: &image::RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .expect("png");
    bytes
}

/// The library side: the model, the clip's frames and their embeddings (lazily).
pub(crate) struct Library {
    model: VideoModel,
    pub(crate) frames: Vec<image::RgbImage>,
    embeddings: HashMap<usize, Embedding>,
}

impl Library {
    pub(crate) fn new(ckpt: &Checkpoint) -> Self {
        let sam = Arc::new(Sam::from_checkpoint(ckpt, &Device::Cpu).expect("model"));
        let model = VideoModel::load(ckpt, sam).expect("video model");
        let src = mobilesam_model::image::read_image(
            &server_support::workspace().join("tests/fixtures/images/coffee.png"),
            u64::MAX,
        )
        .expect("source photo");
        let frames = (0..12).map(|t| frame(&src, t)).collect();
        Self {
            model,
            frames,
            embeddings: HashMap::new(),
        }
    }

    pub(crate) fn embedding(&mut self, t: usize) -> &Embedding {
        let sam = self.model.sam().clone();
        let img = &self.frames[t];
        self.embeddings
            .entry(t)
            .or_insert_with(|| sam.embed(img).expect("embed"))
    }

    /// `add_prompt`: (RLE counts, occluded).
    pub(crate) fn prompt(
        &mut self,
        tracker: &mut ObjectTracker,
        t: usize,
        p: &ObjectPrompt,
    ) -> Expected {
        self.embedding(t);
        let r = tracker
            .add_prompt(&self.model, t, p, &self.embeddings[&t])
            .expect("add_prompt");
        expected(&r.low_res_logits, r.object_score_logit)
    }

    /// The server's follow-up: the prompted frame visited first, then `t`.
    pub(crate) fn track(
        &mut self,
        tracker: &mut ObjectTracker,
        t: usize,
        start: Option<(usize, Direction)>,
    ) -> Expected {
        self.embedding(t);
        let e = &self.embeddings[&t];
        if let Some((s, d)) = start {
            tracker.track_in(&self.model, s, e, d).expect("visit");
        }
        let r = tracker.track(&self.model, t, e).expect("track");
        expected(&r.low_res_logits, r.object_score_logit)
    }
}

/// A mask as the server should answer it: RLE counts, whether occluded.
pub(crate) type Expected = (String, bool);

fn expected(logits: &[f32], score: f32) -> Expected {
    let (mask, _) =
        upscale_stretched_to_scored_mask(logits, (SIDE as usize, SIDE as usize)).expect("mask");
    (mask.to_rle().counts, score <= 0.0)
}

pub(crate) fn click(x: f32, y: f32) -> ObjectPrompt {
    ObjectPrompt {
        points: vec![Point { x, y, label: 1 }],
        ..Default::default()
    }
}

pub(crate) fn wire_prompt(request_id: u64, object_id: u64, (x, y): (f32, f32)) -> v1::Prompt {
    v1::Prompt {
        request_id,
        objects: vec![v1::ObjectPrompt {
            points: vec![v1::Point { x, y, label: 1 }],
            object_id,
            ..Default::default()
        }],
        track: true,
        ..Default::default()
    }
}

pub(crate) async fn set_frame(stream: &mut Stream, frames: &[Vec<u8>], t: usize) -> Resp {
    stream
        .send(Req::SetImage(v1::SetImage {
            image: frames[t].clone(),
            frame_index: Some(t as i64),
            ..Default::default()
        }))
        .await;
    stream.recv().await
}

/// The one object's (RLE counts, occluded) of an answer.
pub(crate) fn answered(object: &v1::ObjectMasks) -> Expected {
    let state = object.state();
    assert!(
        matches!(state, v1::TrackState::Tracked | v1::TrackState::Occluded),
        "{state:?}"
    );
    assert_eq!(object.masks.len(), 1, "one mask per tracked object");
    let rle = object.masks[0].rle.as_ref().expect("rle");
    (rle.counts.clone(), state == v1::TrackState::Occluded)
}

pub(crate) fn tracked(response: Resp, t: usize) -> Expected {
    let ready = ready(response);
    assert_eq!(ready.frame_index, t as i64);
    let tracked = ready.tracked.expect("tracked masks");
    assert_eq!(tracked.objects.len(), 1);
    assert_eq!(tracked.objects[0].object_id, 7);
    answered(&tracked.objects[0])
}

pub(crate) fn decodes(server: &Server) -> f64 {
    metric(&server.scrape(), "mobilesam_decode_duration_seconds_count")
}

pub(crate) async fn serve(dir: &Path, args: &[&str]) -> (Server, PathBuf) {
    let path = dir.join("sam2.1_rescaled.safetensors");
    if !path.exists() {
        rescaled_checkpoint()
            .save_safetensors(&path)
            .expect("write the checkpoint");
    }
    let server = Server::launch(Launch::args(args).checkpoint(path.clone())).await;
    (server, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_tracking_matches_the_library_revisits_corrects_and_occludes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = serve(dir.path(), &[]).await;
    let mut lib = Library::new(&rescaled_checkpoint());
    let frames: Vec<Vec<u8>> = lib.frames.iter().map(png_of).collect();
    let mut client = server.client().await;
    let info = client
        .get_model_info(v1::GetModelInfoRequest::default())
        .await
        .expect("model info")
        .into_inner();
    assert!(info.memory_tracking, "{info:?}");

    // Forward: prompt on frame 0, frames 1..3.
    let mut stream = Stream::open(&mut client).await;
    let mut tracker = ObjectTracker::new(None);
    ready(set_frame(&mut stream, &frames, 0).await);
    let answer = masks(stream.ask(wire_prompt(1, 7, CLICK)).await);
    let want = lib.prompt(&mut tracker, 0, &click(CLICK.0, CLICK.1));
    assert_eq!(answered(&answer.objects[0]), want, "the prompt's mask");
    assert!(!want.1 && !want.0.is_empty());
    let mut forward = Vec::new();
    for t in 1..=3 {
        let start = (t == 1).then_some((0, Direction::Forward));
        let want = lib.track(&mut tracker, t, start);
        let got = tracked(set_frame(&mut stream, &frames, t).await, t);
        assert_eq!(got, want, "frame {t}");
        assert!(!got.1, "frame {t} is not occluded");
        forward.push(got);
    }

    // A revisit answers the stored mask, without model work.
    let before = decodes(&server);
    let again = tracked(set_frame(&mut stream, &frames, 1).await, 1);
    assert_eq!(again, forward[0]);
    assert_eq!(decodes(&server), before, "a revisit runs no decode");

    // A correction on frame 2, then frame 3 again: recomputed from the new prompt.
    ready(set_frame(&mut stream, &frames, 2).await);
    let fix = (760.0, 300.0);
    let answer = masks(stream.ask(wire_prompt(2, 7, fix)).await);
    let want = lib.prompt(&mut tracker, 2, &click(fix.0, fix.1));
    assert_eq!(answered(&answer.objects[0]), want, "the correction's mask");
    let want = lib.track(&mut tracker, 3, Some((2, Direction::Forward)));
    let got = tracked(set_frame(&mut stream, &frames, 3).await, 3);
    assert_eq!(got, want, "frame 3 after the correction");
    assert_ne!(got, forward[2], "the correction changed frame 3");

    // The occluded frame, then the object comes back.
    for t in [OCCLUDED_FRAME, OCCLUDED_FRAME + 1] {
        let want = lib.track(&mut tracker, t, None);
        let got = tracked(set_frame(&mut stream, &frames, t).await, t);
        assert_eq!(got, want, "frame {t}");
        assert_eq!(got.1, t == OCCLUDED_FRAME, "frame {t} occluded?");
    }
    let occluded_again = tracked(set_frame(&mut stream, &frames, OCCLUDED_FRAME).await, 8);
    assert!(occluded_again.1);

    // Reverse travel in a second session: prompt on frame 11, then 10 and 9.
    let mut reverse = Stream::open(&mut client).await;
    let mut tracker = ObjectTracker::new(None);
    ready(set_frame(&mut reverse, &frames, 11).await);
    let answer = masks(reverse.ask(wire_prompt(3, 7, CLICK)).await);
    let want = lib.prompt(&mut tracker, 11, &click(CLICK.0, CLICK.1));
    assert_eq!(answered(&answer.objects[0]), want);
    for t in [10, 9] {
        let start = (t == 10).then_some((11, Direction::Reverse));
        let want = lib.track(&mut tracker, t, start);
        let got = tracked(set_frame(&mut reverse, &frames, t).await, t);
        assert_eq!(got, want, "reverse frame {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_frames_are_bounded_per_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = serve(dir.path(), &["--max-tracked-frames", "2"]).await;
    let src = mobilesam_model::image::read_image(
        &server_support::workspace().join("tests/fixtures/images/coffee.png"),
        u64::MAX,
    )
    .expect("source photo");
    let frames: Vec<Vec<u8>> = (0..3).map(|t| png_of(&frame(&src, t))).collect();
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    ready(set_frame(&mut stream, &frames, 0).await);
    masks(stream.ask(wire_prompt(1, 7, CLICK)).await);
    tracked(set_frame(&mut stream, &frames, 1).await, 1);
    let refused = error(set_frame(&mut stream, &frames, 2).await);
    assert_eq!(refused.code, tonic::Code::ResourceExhausted as i32);
    assert!(
        refused.message.contains("--max-tracked-frames"),
        "{}",
        refused.message
    );
    // Stored frames are still answered.
    tracked(set_frame(&mut stream, &frames, 0).await, 0);
}
