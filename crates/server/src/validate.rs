//! Every rule for bad input, in one place: wire messages are checked here and turned into
//! model prompts, or refused with a [`RequestError`] that says what is wrong. The image
//! bytes themselves are checked by the model crate's decoder (format, corruption, pixel
//! limit before decoding), on a worker.

use mobilesam_model::prompt::LOW_RES_MASK_SIZE;
use mobilesam_model::{BoxPrompt, DecodeOptions, ObjectPrompt, Point};
use mobilesam_proto::v1;

use crate::error::RequestError;

/// Longest accepted client-chosen session id.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Size limits of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLimits {
    /// Largest number of objects in one prompt.
    pub max_objects: usize,
    /// Largest number of points in one object.
    pub max_points: usize,
}

/// What a `SetImage` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRequest {
    /// Encode a new image; keep it under `session_id` if given, else under the stream's
    /// current session or a new one.
    Encode {
        /// The encoded image bytes.
        image: Vec<u8>,
        /// The session to store it under, if the client chose one.
        session_id: Option<String>,
    },
    /// Resume a cached session.
    Resume {
        /// The session to resume.
        session_id: String,
    },
    /// Open a session on the embedding of already-seen image bytes, named by their SHA-256.
    Digest {
        /// SHA-256 of the image bytes, as the client sent it.
        image_sha256: String,
        /// The session to open it under, if the client chose one.
        session_id: Option<String>,
    },
    /// Encode an image in the background into this replica's cache and the embedding
    /// store, without opening a session on it (`SetImage.prefetch`).
    Prefetch {
        /// The encoded image bytes.
        image: Vec<u8>,
    },
}

/// Checks a `SetImage` message.
pub fn set_image(message: v1::SetImage) -> Result<ImageRequest, RequestError> {
    if message.prefetch {
        if message.image.is_empty() || !message.image_sha256.is_empty() {
            return Err(RequestError::InvalidArgument(
                "SetImage.prefetch needs the image bytes (and no image_sha256): it encodes them \
                 ahead of use"
                    .into(),
            ));
        }
        return Ok(ImageRequest::Prefetch {
            image: message.image,
        });
    }
    let session_id = if message.session_id.is_empty() {
        None
    } else {
        check_session_id(&message.session_id)?;
        Some(message.session_id)
    };
    if !message.image_sha256.is_empty() {
        if !message.image.is_empty() {
            return Err(RequestError::InvalidArgument(
                "SetImage takes image bytes or an image_sha256, not both".into(),
            ));
        }
        return Ok(ImageRequest::Digest {
            image_sha256: message.image_sha256,
            session_id,
        });
    }
    match (message.image.is_empty(), session_id) {
        (false, session_id) => Ok(ImageRequest::Encode {
            image: message.image,
            session_id,
        }),
        (true, Some(session_id)) => Ok(ImageRequest::Resume { session_id }),
        (true, None) => Err(RequestError::InvalidArgument(
            "SetImage needs an image, a session_id to resume, or an image_sha256".into(),
        )),
    }
}

/// The frame index a `SetImage` names, if any (`None`: the index after the session's
/// previous frame); negative indices are refused.
pub fn frame_index(message: &v1::SetImage) -> Result<Option<i64>, RequestError> {
    match message.frame_index {
        Some(index) if index < 0 => Err(RequestError::InvalidArgument(format!(
            "frame_index must be 0 or more, not {index}"
        ))),
        index => Ok(index),
    }
}

/// Checks a client-chosen session id: at most [`MAX_SESSION_ID_LEN`] characters of
/// `A-Z a-z 0-9 - _ . :`.
pub fn check_session_id(id: &str) -> Result<(), RequestError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.len() > MAX_SESSION_ID_LEN || !id.chars().all(allowed) {
        return Err(RequestError::InvalidArgument(format!(
            "session_id must be at most {MAX_SESSION_ID_LEN} characters of A-Z, a-z, 0-9, \
             '-', '_', '.', ':'"
        )));
    }
    Ok(())
}

/// Checks a `Prompt` and turns it into model prompts and decode options.
pub fn prompt(
    message: &v1::Prompt,
    limits: PromptLimits,
) -> Result<(Vec<ObjectPrompt>, DecodeOptions), RequestError> {
    if message.objects.is_empty() {
        return Err(RequestError::InvalidArgument(
            "a prompt needs at least one object".into(),
        ));
    }
    if message.objects.len() > limits.max_objects {
        return Err(RequestError::InvalidArgument(format!(
            "a prompt has {} objects; at most {} are allowed",
            message.objects.len(),
            limits.max_objects
        )));
    }
    let objects = message
        .objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            object_prompt(object, limits)
                .map_err(|reason| RequestError::InvalidArgument(format!("object {i}: {reason}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = DecodeOptions {
        multimask: message.multimask_output,
        return_low_res_logits: message.return_low_res_logits,
        return_polygons: message.return_polygons,
    };
    Ok((objects, options))
}

/// One object: converted, then checked by the model's own rules (labels, finite
/// coordinates, box corners, at least one point or a box, mask size).
fn object_prompt(object: &v1::ObjectPrompt, limits: PromptLimits) -> Result<ObjectPrompt, String> {
    if object.points.len() > limits.max_points {
        return Err(format!(
            "{} points; at most {} are allowed",
            object.points.len(),
            limits.max_points
        ));
    }
    let prompt = ObjectPrompt {
        points: object
            .points
            .iter()
            .map(|p| Point {
                x: p.x,
                y: p.y,
                label: p.label,
            })
            .collect(),
        bbox: object.r#box.as_ref().map(|b| BoxPrompt {
            x1: b.x1,
            y1: b.y1,
            x2: b.x2,
            y2: b.y2,
        }),
        mask_input: mask_input(&object.mask_input)?,
    };
    prompt.validate().map_err(|e| match e {
        mobilesam_model::ModelError::InvalidPrompt(reason) => reason,
        other => other.to_string(),
    })?;
    Ok(prompt)
}

/// `mask_input` bytes: empty, or exactly 256x256 little-endian float32 values.
fn mask_input(bytes: &[u8]) -> Result<Option<Vec<f32>>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let want = LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE * 4;
    if bytes.len() != want {
        return Err(format!(
            "mask_input has {} bytes; it must be {LOW_RES_MASK_SIZE}x{LOW_RES_MASK_SIZE} \
             float32 little-endian logits = {want} bytes",
            bytes.len()
        ));
    }
    Ok(Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const LIMITS: PromptLimits = PromptLimits {
        max_objects: 2,
        max_points: 2,
    };

    fn point(x: f32, y: f32, label: i32) -> v1::Point {
        v1::Point { x, y, label }
    }

    fn object(points: Vec<v1::Point>, bbox: Option<[f32; 4]>) -> v1::ObjectPrompt {
        v1::ObjectPrompt {
            points,
            r#box: bbox.map(|[x1, y1, x2, y2]| v1::Box { x1, y1, x2, y2 }),
            mask_input: Vec::new(),
            ..Default::default()
        }
    }

    fn prompt_of(objects: Vec<v1::ObjectPrompt>) -> v1::Prompt {
        v1::Prompt {
            request_id: 1,
            objects,
            multimask_output: true,
            return_low_res_logits: false,
            ..Default::default()
        }
    }

    fn refused(objects: Vec<v1::ObjectPrompt>) -> String {
        let err = prompt(&prompt_of(objects), LIMITS).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        err.to_string()
    }

    #[test]
    fn valid_prompt_converts() {
        let mut with_mask = object(vec![point(3.0, 4.0, 0)], None);
        with_mask.mask_input = 1.5f32
            .to_le_bytes()
            .repeat(LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE);
        let (objects, options) = prompt(
            &prompt_of(vec![
                object(vec![point(1.0, 2.0, 1)], Some([0.0, 0.0, 5.0, 5.0])),
                with_mask,
            ]),
            LIMITS,
        )
        .expect("valid");
        assert!(options.multimask && !options.return_low_res_logits);
        assert_eq!(objects[0].points[0].x, 1.0);
        assert_eq!(objects[0].bbox.map(|b| b.x2), Some(5.0));
        let mask = objects[1].mask_input.as_ref().expect("mask");
        assert_eq!(mask.len(), 65536);
        assert!(mask.iter().all(|&v| v == 1.5));
    }

    #[test]
    fn every_bad_prompt_is_refused_with_a_reason() {
        assert!(refused(vec![]).contains("at least one object"));
        let three = vec![object(vec![point(1.0, 1.0, 1)], None); 3];
        assert!(refused(three).contains("3 objects"));
        let many_points = vec![object(vec![point(1.0, 1.0, 1); 3], None)];
        assert!(refused(many_points).contains("3 points"));
        assert!(refused(vec![object(vec![point(1.0, 1.0, 2)], None)]).contains("label 2"));
        assert!(refused(vec![object(vec![point(f32::NAN, 1.0, 1)], None)]).contains("non-finite"));
        assert!(
            refused(vec![object(vec![point(1.0, f32::INFINITY, 1)], None)]).contains("non-finite")
        );
        assert!(refused(vec![object(vec![], Some([5.0, 0.0, 1.0, 1.0]))]).contains("x2 > x1"));
        assert!(refused(vec![object(vec![], None)]).contains("at least one point or a box"));
        let mut bad_mask = object(vec![point(1.0, 1.0, 1)], None);
        bad_mask.mask_input = vec![0; 100];
        assert!(refused(vec![bad_mask]).contains("100 bytes"));
        let mut nan_mask = object(vec![point(1.0, 1.0, 1)], None);
        nan_mask.mask_input = f32::NAN.to_le_bytes().repeat(65536);
        assert!(refused(vec![nan_mask]).contains("non-finite"));
        let second_bad = vec![
            object(vec![point(1.0, 1.0, 1)], None),
            object(vec![point(1.0, 1.0, -1)], None),
        ];
        assert!(refused(second_bad).starts_with("object 1:"));
    }

    #[test]
    fn set_image_variants() {
        let encode = set_image(v1::SetImage {
            image: vec![1, 2, 3],
            session_id: String::new(),
            ..Default::default()
        });
        assert_eq!(
            encode,
            Ok(ImageRequest::Encode {
                image: vec![1, 2, 3],
                session_id: None
            })
        );
        let resume = set_image(v1::SetImage {
            image: Vec::new(),
            session_id: "abc-1".into(),
            ..Default::default()
        });
        assert_eq!(
            resume,
            Ok(ImageRequest::Resume {
                session_id: "abc-1".into()
            })
        );
        let empty = set_image(v1::SetImage::default()).unwrap_err();
        assert_eq!(empty.code(), Code::InvalidArgument);
        let bad_id = set_image(v1::SetImage {
            image: Vec::new(),
            session_id: "a b".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(bad_id.to_string().contains("session_id"));
        let long_id = set_image(v1::SetImage {
            image: Vec::new(),
            session_id: "x".repeat(129),
            ..Default::default()
        });
        assert!(long_id.is_err());
    }

    #[test]
    fn set_image_by_digest() {
        let digest = |image: Vec<u8>, session_id: &str| v1::SetImage {
            image,
            session_id: session_id.into(),
            image_sha256: "ab".repeat(32),
            ..Default::default()
        };
        assert_eq!(
            set_image(digest(Vec::new(), "")),
            Ok(ImageRequest::Digest {
                image_sha256: "ab".repeat(32),
                session_id: None
            })
        );
        assert_eq!(
            set_image(digest(Vec::new(), "s-1")),
            Ok(ImageRequest::Digest {
                image_sha256: "ab".repeat(32),
                session_id: Some("s-1".into())
            })
        );
        let both = set_image(digest(vec![1], "")).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }
}
