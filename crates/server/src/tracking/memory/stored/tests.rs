//! The stored tracking state's round trip, and the values it refuses.

use super::*;

const CHECKPOINT: &str = "ab12";

fn memory(seed: u16, features: bool) -> FrameMemory {
    FrameMemory {
        // Negative bf16 values (high bit set) included.
        features: features.then(|| vec![seed, 0x8000 | seed, 0xffff, 0]),
        obj_ptr: vec![f32::from(seed), -1.5],
        object_score_logit: -0.25,
        low_res_logits: features.then(|| vec![1.0, f32::NEG_INFINITY]),
    }
}

fn object() -> MemoryObject {
    let mut state = TrackerState::default();
    state.cond.insert(0, memory(1, true));
    state.pending.insert(5, memory(2, true));
    state.non_cond.insert(3, memory(3, true));
    state.non_cond.insert(1, memory(4, false));
    state.mark_tracked(1, Direction::Forward);
    state.mark_tracked(2, Direction::Forward);
    state.mark_tracked(9, Direction::Reverse);
    state.last = Some((9, Direction::Reverse));
    let mut object = MemoryObject {
        tracker: ObjectTracker::from_state(state, None),
        generation: 3,
        start: Some(5),
        return_polygons: true,
        ..MemoryObject::default()
    };
    let mask = MaskOutput {
        score: 0.75,
        area: 12,
        bbox: [1.0, 2.0, 3.0, 4.0],
        rle: Rle {
            size: [4, 8],
            counts: "3a2b".into(),
        },
        stability_score: 0.5,
        low_res_logits: None,
        polygons: Some(vec![Region {
            area: 12,
            outline: vec![[0.0, 0.0], [4.0, 0.0], [4.0, 3.0]],
            holes: vec![vec![[1.0, 1.0], [2.0, 1.0], [2.0, 2.0]]],
        }]),
    };
    object.results.insert(
        2,
        StoredResult {
            generation: 3,
            mask: mask.clone(),
            occluded: false,
        },
    );
    object.results.insert(
        7,
        StoredResult {
            generation: 2,
            mask: MaskOutput {
                polygons: None,
                ..mask
            },
            occluded: true,
        },
    );
    object
}

fn session() -> BTreeMap<u64, MemoryObject> {
    BTreeMap::from([(4, object()), (9, MemoryObject::default())])
}

fn assert_same(a: &BTreeMap<u64, MemoryObject>, b: &BTreeMap<u64, MemoryObject>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (x, y) in a.values().zip(b.values()) {
        assert_eq!(x.tracker.state(), y.tracker.state());
        assert_eq!(
            (x.generation, x.start, x.return_polygons),
            (y.generation, y.start, y.return_polygons)
        );
        assert_eq!(x.results.len(), y.results.len());
        for ((fx, rx), (fy, ry)) in x.results.iter().zip(&y.results) {
            assert_eq!(fx, fy);
            assert_eq!((rx.generation, rx.occluded), (ry.generation, ry.occluded));
            let (mx, my) = (&rx.mask, &ry.mask);
            assert_eq!(mx.rle, my.rle);
            assert_eq!(mx.polygons, my.polygons);
            assert_eq!(
                (mx.score, mx.area, mx.bbox, mx.stability_score),
                (my.score, my.area, my.bbox, my.stability_score)
            );
        }
    }
}

#[test]
fn a_session_round_trips() {
    let objects = session();
    let bytes = encode(CHECKPOINT, &objects);
    assert!(bytes.starts_with(MAGIC));
    assert_eq!(&bytes[8..10], &FORMAT_VERSION.to_le_bytes());
    let back = decode(&bytes, CHECKPOINT).expect("decodes");
    assert_same(&objects, &back);
    // Features take two bytes a value, negative ones too.
    let empty = encode(CHECKPOINT, &BTreeMap::new());
    assert!(decode(&empty, CHECKPOINT).expect("empty").is_empty());
}

#[test]
fn foreign_versions_models_and_damage_are_refused() {
    let bytes = encode(CHECKPOINT, &session());
    assert_eq!(decode(&bytes, "cd34").err(), Some(BadTracks::Model));
    let mut version = bytes.clone();
    version[8] = 2;
    assert_eq!(decode(&version, CHECKPOINT).err(), Some(BadTracks::Format));
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert_eq!(decode(&magic, CHECKPOINT).err(), Some(BadTracks::Format));
    for short in [0, 5, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
        let refused = decode(&bytes[..short], CHECKPOINT);
        assert!(refused.is_err(), "{short} of {} bytes", bytes.len());
    }
    let mut garbage = bytes[..HEADER_LEN].to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    assert!(matches!(
        decode(&garbage, CHECKPOINT),
        Err(BadTracks::Payload(_))
    ));
}

#[test]
fn odd_feature_bytes_and_backward_spans_are_refused() {
    let odd = FrameV1 {
        features: Some(vec![1, 2, 3]),
        obj_ptr: Vec::new(),
        object_score_logit: 0.0,
        low_res_logits: None,
    };
    assert!(matches!(odd.into_memory(), Err(BadTracks::Payload(_))));
    let backward = TrackerV1 {
        cond: Vec::new(),
        pending: Vec::new(),
        non_cond: Vec::new(),
        tracked: vec![(4, 2, false)],
        last: None,
    };
    assert!(matches!(backward.into_state(), Err(BadTracks::Payload(_))));
}
