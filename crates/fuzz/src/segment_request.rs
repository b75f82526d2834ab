//! Stream messages from the wire: arbitrary bytes decoded as a `SegmentRequest` (prost),
//! then checked by the server's `validate` module as the stream handler does.

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request;
use mobilesam_proto::Code;
use mobilesam_server::validate::{self, ImageRequest, PromptLimits, MAX_SESSION_ID_LEN};
use prost::Message;

/// Prompt limits under test, small so that both sides of each limit are reached.
pub const LIMITS: PromptLimits = PromptLimits {
    max_objects: 4,
    max_points: 4,
};

/// Decodes `data` as a `SegmentRequest` and validates its `SetImage` or `Prompt`.
pub fn run(data: &[u8]) {
    let Ok(request) = v1::SegmentRequest::decode(data) else {
        return;
    };
    match request.request {
        Some(Request::SetImage(message)) => set_image(message),
        Some(Request::Prompt(message)) => prompt(&message),
        Some(Request::GenerateMasks(_) | Request::Untrack(_)) | None => {}
    }
}

fn set_image(message: v1::SetImage) {
    if let Some(index) = validate::frame_index(&message).unwrap_or_default() {
        assert!(index >= 0);
    }
    match validate::set_image(message) {
        Ok(ImageRequest::Encode { image, session_id }) => {
            assert!(!image.is_empty());
            if let Some(id) = session_id {
                assert!(!id.is_empty() && id.len() <= MAX_SESSION_ID_LEN);
            }
        }
        Ok(ImageRequest::Resume { session_id }) => {
            assert!(!session_id.is_empty() && session_id.len() <= MAX_SESSION_ID_LEN);
        }
        Ok(ImageRequest::Digest {
            image_sha256,
            session_id,
        }) => {
            assert!(!image_sha256.is_empty());
            if let Some(id) = session_id {
                assert!(!id.is_empty() && id.len() <= MAX_SESSION_ID_LEN);
            }
        }
        Ok(ImageRequest::Prefetch { image }) => assert!(!image.is_empty()),
        Err(e) => assert_eq!(e.code(), Code::InvalidArgument, "{e}"),
    }
}

fn prompt(message: &v1::Prompt) {
    match validate::prompt(message, LIMITS) {
        Ok((objects, options)) => {
            assert!(!objects.is_empty() && objects.len() <= LIMITS.max_objects);
            assert_eq!(options.multimask, message.multimask_output);
            for object in &objects {
                assert!(object.points.len() <= LIMITS.max_points);
                object.validate().expect("an accepted object is valid");
            }
        }
        Err(e) => {
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}
