//! The results file (tests/conformance/README.md, "Results file" and the result objects):
//! what each step recorded, built from the wire messages exactly as they came. Floats are
//! written from the float32 the wire carries as the 8 hex digits of its bits, never through
//! a decimal string, so every client writes the same text for the same answer.

use mobilesam_proto::v1;
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::failure::Failure;

/// The results file's `format`.
pub const FORMAT: &str = "mobilesam-conformance-results/1";

/// A float32 written as the 8 lowercase hex digits of its IEEE-754 bits (1.0 is
/// `"3f800000"`, -0.0 is `"80000000"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F32(pub f32);

impl Serialize for F32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{:08x}", self.0.to_bits()))
    }
}

/// The whole results file.
#[derive(Debug, Serialize)]
pub struct ResultsFile {
    /// Always [`FORMAT`].
    pub format: &'static str,
    /// The runner's name: `rust`.
    pub client: &'static str,
    /// This program's version.
    pub client_version: &'static str,
    /// The scenario file's base name.
    pub scenario: String,
    /// One entry per scenario step, in scenario order.
    pub steps: Vec<StepEntry>,
}

/// One step's entry: its name and op, then its result or its error.
#[derive(Debug, Serialize)]
pub struct StepEntry {
    /// The step's name.
    pub name: String,
    /// The step's operation.
    pub op: &'static str,
    /// `result`, or `error` and `message`.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How a step ended.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// The step succeeded with this result object.
    Done {
        /// The operation's result object.
        result: Value,
    },
    /// The step failed.
    Failed {
        /// The code name.
        error: &'static str,
        /// Text for people.
        message: String,
    },
}

impl From<Result<Value, Failure>> for Outcome {
    fn from(result: Result<Value, Failure>) -> Self {
        match result {
            Ok(result) => Outcome::Done { result },
            Err(f) => Outcome::Failed {
                error: f.code,
                message: f.message,
            },
        }
    }
}

/// An entry of a list of answers that failed on its own (`{"error": CODE}`) among others
/// that succeeded (`prefetch` images, `pipeline` answers).
pub fn error_entry(failure: &Failure) -> Value {
    serde_json::json!({ "error": failure.code })
}

/// `ModelInfoResult`.
#[derive(Debug, Serialize)]
pub struct ModelInfoResult {
    name: String,
    family: String,
    image_size: u32,
    memory_tracking: bool,
    parameters: u64,
    checkpoint_bytes: u64,
    device: String,
}

impl From<&v1::ModelInfo> for ModelInfoResult {
    fn from(info: &v1::ModelInfo) -> Self {
        ModelInfoResult {
            name: info.name.clone(),
            family: info.family.clone(),
            image_size: info.image_size,
            memory_tracking: info.memory_tracking,
            parameters: info.parameters,
            checkpoint_bytes: info.checkpoint_bytes,
            device: info.device.clone(),
        }
    }
}

/// `ImageReadyResult`; `tracked` is `[]` when `ImageReady.tracked` is absent.
#[derive(Debug, Serialize)]
pub struct ImageReadyResult {
    width: u32,
    height: u32,
    frame_index: i64,
    prefetched: bool,
    image_sha256: String,
    tracked: Vec<ObjectResult>,
}

impl ImageReadyResult {
    /// From the wire; fails on a track state this client does not know.
    pub fn from_wire(ready: &v1::ImageReady) -> Result<Self, Failure> {
        Ok(ImageReadyResult {
            width: ready.width,
            height: ready.height,
            frame_index: ready.frame_index,
            prefetched: ready.prefetched,
            image_sha256: ready.image_sha256.clone(),
            tracked: objects(ready.tracked.as_ref().map_or(&[], |m| &m.objects[..]))?,
        })
    }
}

/// `MasksResult`: the objects in wire order.
#[derive(Debug, Serialize)]
pub struct MasksResult {
    objects: Vec<ObjectResult>,
}

impl MasksResult {
    /// From the wire; fails on a track state this client does not know.
    pub fn from_wire(masks: &v1::Masks) -> Result<Self, Failure> {
        Ok(MasksResult {
            objects: objects(&masks.objects)?,
        })
    }
}

/// `ObjectResult`: `state` is the `TrackState` value's proto name.
#[derive(Debug, Serialize)]
pub struct ObjectResult {
    object_id: u64,
    state: &'static str,
    masks: Vec<MaskResult>,
}

fn objects(objects: &[v1::ObjectMasks]) -> Result<Vec<ObjectResult>, Failure> {
    objects
        .iter()
        .map(|o| {
            let state = v1::TrackState::try_from(o.state)
                .map_err(|_| Failure::client(format!("unknown track state {}", o.state)))?;
            Ok(ObjectResult {
                object_id: o.object_id,
                state: state.as_str_name(),
                masks: o.masks.iter().map(MaskResult::from).collect(),
            })
        })
        .collect()
}

/// `MaskResult`: an absent bbox is four zeros, an absent RLE `{"size": [], "counts": ""}`.
#[derive(Debug, Serialize)]
pub struct MaskResult {
    score: F32,
    stability_score: F32,
    area: u64,
    bbox: [F32; 4],
    rle: RleResult,
    polygons: Vec<PolygonResult>,
}

/// `Mask.rle` as on the wire.
#[derive(Debug, Serialize)]
struct RleResult {
    size: Vec<u32>,
    counts: String,
}

/// One `Mask.polygons` entry.
#[derive(Debug, Serialize)]
struct PolygonResult {
    hole: bool,
    points: Vec<F32>,
}

impl From<&v1::Mask> for MaskResult {
    fn from(mask: &v1::Mask) -> Self {
        let rle = mask.rle.clone().unwrap_or_default();
        MaskResult {
            score: F32(mask.score),
            stability_score: F32(mask.stability_score),
            area: mask.area,
            bbox: corners(mask.bbox.as_ref()),
            rle: RleResult {
                size: rle.size,
                counts: rle.counts,
            },
            polygons: mask
                .polygons
                .iter()
                .map(|p| PolygonResult {
                    hole: p.hole,
                    points: p.points.iter().copied().map(F32).collect(),
                })
                .collect(),
        }
    }
}

/// A box's x1, y1, x2, y2; four zeros when absent.
fn corners(b: Option<&v1::Box>) -> [F32; 4] {
    let b = b.copied().unwrap_or_default();
    [F32(b.x1), F32(b.y1), F32(b.x2), F32(b.y2)]
}

/// `GenerateResult`: the masks in arrival order, then the summary.
#[derive(Debug, Default, Serialize)]
pub struct GenerateResult {
    /// Each `GeneratedMask`, in arrival order.
    pub masks: Vec<GeneratedResult>,
    /// The `GenerateSummary`.
    pub summary: SummaryResult,
}

/// `GenerateResult.summary`.
#[derive(Debug, Default, Serialize)]
pub struct SummaryResult {
    mask_count: u32,
    width: u32,
    height: u32,
}

impl From<&v1::GenerateSummary> for SummaryResult {
    fn from(s: &v1::GenerateSummary) -> Self {
        SummaryResult {
            mask_count: s.mask_count,
            width: s.width,
            height: s.height,
        }
    }
}

/// `GeneratedResult`.
#[derive(Debug, Serialize)]
pub struct GeneratedResult {
    mask: MaskResult,
    stability_score: F32,
    point: PointResult,
    crop_box: [F32; 4],
}

/// `GeneratedResult.point`.
#[derive(Debug, Serialize)]
struct PointResult {
    x: F32,
    y: F32,
    label: i32,
}

impl From<&v1::GeneratedMask> for GeneratedResult {
    fn from(g: &v1::GeneratedMask) -> Self {
        let point = g.point.unwrap_or_default();
        GeneratedResult {
            mask: MaskResult::from(&g.mask.clone().unwrap_or_default()),
            stability_score: F32(g.stability_score),
            point: PointResult {
                x: F32(point.x),
                y: F32(point.y),
                label: point.label,
            },
            crop_box: corners(g.crop_box.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text<T: Serialize>(value: &T) -> Value {
        serde_json::to_value(value).expect("serializable")
    }

    #[test]
    fn floats_are_their_bits_in_hex() {
        assert_eq!(text(&F32(1.0)), json!("3f800000"));
        assert_eq!(text(&F32(-0.0)), json!("80000000"));
        assert_eq!(text(&F32(0.0)), json!("00000000"));
        assert_eq!(text(&F32(0.92)), json!("3f6b851f"));
        assert_eq!(text(&F32(f32::from_bits(1))), json!("00000001"));
    }

    #[test]
    fn absent_fields_take_the_readme_defaults() {
        let mask = v1::Mask {
            score: 0.5,
            area: 7,
            ..Default::default()
        };
        assert_eq!(
            text(&MaskResult::from(&mask)),
            json!({"score": "3f000000", "stability_score": "00000000", "area": 7,
                   "bbox": ["00000000", "00000000", "00000000", "00000000"],
                   "rle": {"size": [], "counts": ""}, "polygons": []})
        );
        let ready = v1::ImageReady {
            width: 4,
            height: 3,
            image_sha256: "ab".into(),
            session_id: "never recorded".into(),
            encode_ms: 12.0,
            ..Default::default()
        };
        let ready = ImageReadyResult::from_wire(&ready).expect("known states");
        assert_eq!(
            text(&ready),
            json!({"width": 4, "height": 3, "frame_index": 0, "prefetched": false,
                   "image_sha256": "ab", "tracked": []})
        );
    }

    #[test]
    fn objects_name_their_track_state() {
        let masks = v1::Masks {
            request_id: 9,
            objects: vec![v1::ObjectMasks {
                masks: vec![],
                object_id: 3,
                state: v1::TrackState::Lost as i32,
            }],
            decode_ms: 1.0,
        };
        assert_eq!(
            text(&MasksResult::from_wire(&masks).expect("known state")),
            json!({"objects": [{"object_id": 3, "state": "TRACK_STATE_LOST", "masks": []}]})
        );
        let unknown = v1::Masks {
            objects: vec![v1::ObjectMasks {
                state: 42,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            MasksResult::from_wire(&unknown).map(|_| ()),
            Err(Failure::client("unknown track state 42"))
        );
    }

    #[test]
    fn step_entries_hold_a_result_or_an_error() {
        let ok = StepEntry {
            name: "a".into(),
            op: "close",
            outcome: Ok(json!({})).into(),
        };
        assert_eq!(text(&ok), json!({"name": "a", "op": "close", "result": {}}));
        let failed = StepEntry {
            name: "b".into(),
            op: "open",
            outcome: Err(Failure::client("boom")).into(),
        };
        assert_eq!(
            text(&failed),
            json!({"name": "b", "op": "open", "error": "CLIENT_ERROR", "message": "boom"})
        );
    }
}
