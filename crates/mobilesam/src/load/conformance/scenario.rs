//! The scenario file (tests/conformance/README.md, "Scenario format"), read and checked
//! before any step runs: a malformed file stops the runner with one line, while what a
//! client library would refuse at run time (a prompt's nesting, a generate parameter's name)
//! is left to the step, which records it as `CLIENT_ERROR` as the other runners do.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The `format` a scenario file must declare.
pub const FORMAT: &str = "mobilesam-conformance/1";

/// A scenario: its steps, in order, and where its image paths are relative to.
#[derive(Debug)]
pub struct Scenario {
    /// The directory of the scenario file (image paths are relative to it).
    pub dir: PathBuf,
    /// The scenario file's base name (the results file's `scenario`).
    pub file_name: String,
    /// The steps, in file order.
    pub steps: Vec<Step>,
}

/// One step: its unique name and its operation.
#[derive(Debug, Deserialize)]
pub struct Step {
    /// The step's name, unique within the file.
    pub name: String,
    /// The operation and its fields (the `op` key selects the variant).
    #[serde(flatten)]
    pub op: Op,
}

/// The operations of a step, by their `op` names; unknown fields are ignored (`expect`
/// among them: it is the comparator's).
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `GetModelInfo`.
    ModelInfo,
    /// A new `Segment` stream and its first `SetImage`.
    Open(Open),
    /// One `Prompt`, answered before the next step.
    Predict {
        /// The scenario's session name.
        session: String,
        /// The prompt's fields, at the step's top level.
        #[serde(flatten)]
        prompt: PromptSpec,
    },
    /// A `SetImage` on an open stream.
    SetImage {
        /// The scenario's session name.
        session: String,
        /// The image to send.
        image: ImageSpec,
        /// `SetImage.frame_index`, when given.
        frame_index: Option<i64>,
    },
    /// `SetImage{prefetch: true}` for each image, all sent before any answer is read.
    Prefetch {
        /// The scenario's session name.
        session: String,
        /// The images, in request order.
        images: Vec<ImageSpec>,
    },
    /// `GenerateMasks` on the session's image.
    Generate {
        /// The scenario's session name.
        session: String,
        /// `GenerateParams` fields by their proto names (only those given are set).
        #[serde(default)]
        params: Map<String, Value>,
    },
    /// Prompts sent without waiting for answers, then every answer read.
    Pipeline {
        /// The scenario's session name.
        session: String,
        /// The prompts, in send order.
        prompts: Vec<PromptSpec>,
    },
    /// Half-close the stream and wait for its end.
    Close {
        /// The scenario's session name.
        session: String,
    },
}

impl Op {
    /// The operation's name as the scenario spells it (the results' `op`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::ModelInfo => "model_info",
            Op::Open(_) => "open",
            Op::Predict { .. } => "predict",
            Op::SetImage { .. } => "set_image",
            Op::Prefetch { .. } => "prefetch",
            Op::Generate { .. } => "generate",
            Op::Pipeline { .. } => "pipeline",
            Op::Close { .. } => "close",
        }
    }
}

/// An `open` step: the session it binds and what its first `SetImage` carries.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawOpen")]
pub struct Open {
    /// The scenario's name for the new session.
    pub session: String,
    /// What the first `SetImage` sends.
    pub from: OpenFrom,
    /// `SetImage.frame_index`, when given.
    pub frame_index: Option<i64>,
}

/// The three ways to open a session; a step gives exactly one.
#[derive(Debug)]
pub enum OpenFrom {
    /// A new image.
    Image(ImageSpec),
    /// The server's session id of another open scenario session.
    Resume(String),
    /// A literal server session id.
    SessionId(String),
}

/// `open` as written, before exactly one source is checked.
#[derive(Deserialize)]
struct RawOpen {
    session: String,
    image: Option<ImageSpec>,
    resume: Option<String>,
    session_id: Option<String>,
    frame_index: Option<i64>,
}

impl TryFrom<RawOpen> for Open {
    type Error = String;

    fn try_from(raw: RawOpen) -> Result<Self, String> {
        let from = match (raw.image, raw.resume, raw.session_id) {
            (Some(image), None, None) => OpenFrom::Image(image),
            (None, Some(name), None) => OpenFrom::Resume(name),
            (None, None, Some(id)) => OpenFrom::SessionId(id),
            _ => return Err("open needs exactly one of image, resume and session_id".into()),
        };
        Ok(Open {
            session: raw.session,
            from,
            frame_index: raw.frame_index,
        })
    }
}

/// An image: a file's bytes, relative to the scenario's directory, maybe cut short.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageSpec {
    /// The file, relative to the scenario file's directory.
    pub path: PathBuf,
    /// Only the first this many bytes, when given.
    pub truncate: Option<usize>,
}

impl ImageSpec {
    /// The bytes to send, as they are in the file (never decoded).
    pub fn read(&self, dir: &Path) -> Result<Vec<u8>> {
        let path = dir.join(&self.path);
        let mut bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(n) = self.truncate {
            bytes.truncate(n);
        }
        Ok(bytes)
    }
}

/// A prompt as the scenario writes it (README, "Prompts"); the nesting of `points`,
/// `labels` and `boxes` is the command line's and is read when the step runs.
#[derive(Debug, Clone, Deserialize)]
pub struct PromptSpec {
    /// `[x, y]`, `[[x, y], ...]` or `[[[x, y], ...], ...]`.
    pub points: Option<Value>,
    /// Nested like `points`, one level less; absent: every label is 1.
    pub labels: Option<Value>,
    /// `[x1, y1, x2, y2]` or a list of them.
    pub boxes: Option<Value>,
    /// `Prompt.multimask_output`.
    #[serde(default)]
    pub multimask: bool,
    /// `Prompt.return_polygons`.
    #[serde(default)]
    pub polygons: bool,
    /// `Prompt.track`.
    #[serde(default)]
    pub track: bool,
    /// `ObjectPrompt.object_id`, one per object.
    pub object_ids: Option<Vec<Value>>,
    /// `Prompt.supersede_pending` (pipeline prompts).
    #[serde(default)]
    pub supersede: bool,
    /// Milliseconds to wait after the previous prompt was sent (pipeline prompts).
    #[serde(default)]
    pub delay_ms: u64,
}

/// The file as a whole, before its steps are read one by one.
#[derive(Deserialize)]
struct File {
    format: String,
    steps: Vec<Value>,
}

impl Scenario {
    /// Reads and checks the scenario file; the error names the file and the faulty step.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the scenario {}", path.display()))?;
        let file: File = serde_json::from_str(&text)
            .with_context(|| format!("the scenario {} is malformed", path.display()))?;
        if file.format != FORMAT {
            bail!(
                "the scenario {} has format {:?}; this runner reads {FORMAT:?}",
                path.display(),
                file.format
            );
        }
        let steps = parse_steps(file.steps)
            .with_context(|| format!("the scenario {} is malformed", path.display()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Scenario {
            dir,
            file_name,
            steps,
        })
    }
}

/// The steps, each checked, with unique names.
fn parse_steps(values: Vec<Value>) -> Result<Vec<Step>> {
    let mut names = HashSet::new();
    let mut steps = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let label = match value.get("name").and_then(Value::as_str) {
            Some(name) => format!("step {i} ({name:?})"),
            None => format!("step {i}"),
        };
        let step: Step = serde_json::from_value(value).with_context(|| label.clone())?;
        if !names.insert(step.name.clone()) {
            bail!("{label}: the name is used by an earlier step");
        }
        steps.push(step);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(values: Value) -> Result<Vec<Step>> {
        let Value::Array(values) = values else {
            panic!("a list")
        };
        parse_steps(values)
    }

    #[test]
    fn reads_every_operation_and_ignores_unknown_fields() {
        let parsed = steps(json!([
            {"name": "i", "op": "model_info", "expect": {"x": 1}},
            {"name": "o", "op": "open", "session": "s", "image": {"path": "a.png", "truncate": 3},
             "frame_index": 4},
            {"name": "p", "op": "predict", "session": "s", "points": [1, 2], "multimask": true},
            {"name": "g", "op": "generate", "session": "s", "params": {"points_per_side": 4}},
            {"name": "l", "op": "pipeline", "session": "s",
             "prompts": [{"boxes": [0, 0, 4, 4], "delay_ms": 5, "supersede": true}]},
            {"name": "c", "op": "close", "session": "s"}
        ]))
        .expect("valid steps");
        let ops: Vec<_> = parsed.iter().map(|s| s.op.name()).collect();
        assert_eq!(
            ops,
            [
                "model_info",
                "open",
                "predict",
                "generate",
                "pipeline",
                "close"
            ]
        );
        match &parsed[1].op {
            Op::Open(Open {
                from: OpenFrom::Image(image),
                frame_index: Some(4),
                ..
            }) => assert_eq!(image.truncate, Some(3)),
            other => panic!("{other:?}"),
        }
        match &parsed[2].op {
            Op::Predict { prompt, .. } => {
                assert!(prompt.multimask && !prompt.track);
                assert_eq!(prompt.points, Some(json!([1, 2])));
            }
            other => panic!("{other:?}"),
        }
        match &parsed[4].op {
            Op::Pipeline { prompts, .. } => {
                assert!(prompts[0].supersede && prompts[0].delay_ms == 5)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_malformed_steps_naming_them() {
        let cases = [
            (json!([{"name": "x", "op": "fly"}]), "step 0 (\"x\")"),
            (json!([{"op": "model_info"}]), "step 0"),
            (
                json!([{"name": "o", "op": "open", "session": "s"}]),
                "exactly one of",
            ),
            (
                json!([{"name": "o", "op": "open", "session": "s", "resume": "a", "session_id": "b"}]),
                "exactly one of",
            ),
            (json!([{"name": "p", "op": "predict"}]), "step 0 (\"p\")"),
            (
                json!([{"name": "a", "op": "model_info"}, {"name": "a", "op": "model_info"}]),
                "earlier step",
            ),
        ];
        for (values, expected) in cases {
            let message = format!("{:#}", steps(values).expect_err("malformed"));
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains('\n'), "{message:?}");
        }
    }
}
