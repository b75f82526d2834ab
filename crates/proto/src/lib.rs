//! Generated code for the `mobilesam.v1` gRPC contract
//! (`proto/mobilesam/v1/mobilesam.proto`): prost messages, the tonic client
//! [`v1::segment_anything_client::SegmentAnythingClient`] and the server trait
//! [`v1::segment_anything_server::SegmentAnything`].
//!
//! The code is generated at build time by protox (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and tonic-prost-build.

/// The `mobilesam.v1` package.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("mobilesam.v1");
}

/// The encoded `FileDescriptorSet` of the contract (with imports and source info), for
/// gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mobilesam_descriptor.bin"));

/// Fully qualified name of the segmentation service (`mobilesam.v1.SegmentAnything`).
pub use v1::segment_anything_server::SERVICE_NAME;

/// A `google.rpc.Code` value as carried in [`v1::Error::code`].
pub use tonic::Code;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn descriptor_set_names_the_service() {
        let text = String::from_utf8_lossy(FILE_DESCRIPTOR_SET);
        assert!(text.contains("SegmentAnything"));
        assert!(text.contains("mobilesam.v1"));
        assert_eq!(SERVICE_NAME, "mobilesam.v1.SegmentAnything");
    }

    #[test]
    fn messages_round_trip() {
        let request = v1::SegmentRequest {
            request: Some(v1::segment_request::Request::Prompt(v1::Prompt {
                request_id: 7,
                objects: vec![v1::ObjectPrompt {
                    points: vec![v1::Point {
                        x: 1.5,
                        y: 2.5,
                        label: 1,
                    }],
                    r#box: None,
                    mask_input: Vec::new(),
                    ..Default::default()
                }],
                multimask_output: true,
                return_low_res_logits: false,
                ..Default::default()
            })),
        };
        let bytes = request.encode_to_vec();
        let back = v1::SegmentRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back, request);
    }
}
