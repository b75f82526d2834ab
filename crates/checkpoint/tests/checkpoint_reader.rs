//! The `.pt` reader on a real `torch.save` file, the `.safetensors` round trip, and errors
//! for files that are not checkpoints.

mod common;

use mobilesam_checkpoint::{Checkpoint, CheckpointError};
use serde_json::Value;

#[test]
fn reads_a_real_torch_save_file() {
    let dir = common::fixtures();
    let checkpoint = Checkpoint::load(&dir.join("torch_save_small.pt")).expect("pt loads");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("torch_save_small.json")).expect("json"),
    )
    .expect("json parses");
    let tensors = expected["tensors"].as_array().expect("tensors");
    assert_eq!(checkpoint.names().len(), tensors.len());
    for t in tensors {
        let name = t["name"].as_str().expect("name");
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        let got = checkpoint.get(name, &shape).expect("tensor present");
        let got = got
            .flatten_all()
            .expect("flat")
            .to_vec1::<f32>()
            .expect("f32");
        let want: Vec<f32> = t["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();
        assert_eq!(got, want, "values of {name}");
    }
}

#[test]
fn seeded_safetensors_round_trip_through_the_file_reader() {
    let checkpoint = common::seeded_checkpoint();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seeded.safetensors");
    checkpoint.save_safetensors(&path).expect("saves");
    let reread = Checkpoint::load(&path).expect("loads");
    assert_eq!(reread.names(), checkpoint.names());
    let a = checkpoint
        .get("mask_decoder.iou_token.weight", &[1, 256])
        .expect("a");
    let b = reread
        .get("mask_decoder.iou_token.weight", &[1, 256])
        .expect("b");
    assert_eq!(
        a.to_vec2::<f32>().expect("a"),
        b.to_vec2::<f32>().expect("b")
    );
}

#[test]
fn parameter_counts_match_the_reference() {
    let counts = common::seeded_checkpoint().parameter_counts();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("reference/param_counts.json"))
            .expect("json"),
    )
    .expect("parses");
    assert_eq!(
        counts.image_encoder,
        expected["image_encoder"].as_u64().expect("n")
    );
    assert_eq!(
        counts.prompt_encoder,
        expected["prompt_encoder"].as_u64().expect("n")
    );
    assert_eq!(
        counts.mask_decoder,
        expected["mask_decoder"].as_u64().expect("n")
    );
    assert_eq!(counts.total, expected["total"].as_u64().expect("n"));
}

#[test]
fn garbage_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in [
        ("empty.pt", &b""[..]),
        ("short.pt", &b"PK\x03\x04garbage"[..]),
        ("text.safetensors", &b"this is not a checkpoint at all"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = Checkpoint::load(&path).expect_err("error");
        assert!(
            matches!(err, CheckpointError::Invalid { .. }),
            "{name}: {err}"
        );
    }
    let err = Checkpoint::load(&dir.path().join("absent.pt")).expect_err("error");
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
}
