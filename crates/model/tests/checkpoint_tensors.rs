//! The checkpoint's shape checks as the model reports them: a missing or misshapen tensor
//! is named, with both shapes, when the model is built.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use mobilesam_checkpoint::{Checkpoint, CheckpointError};
use mobilesam_model::{ModelError, Sam};

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let full = common::seeded_checkpoint();
    let mut tensors: HashMap<String, Tensor> = full
        .names()
        .into_iter()
        .filter(|n| *n != "mask_decoder.iou_token.weight")
        .map(|n| {
            let t = full.get(n, &shape_of(&full, n)).expect("tensor");
            (n.to_string(), t)
        })
        .collect();
    let err = Sam::from_checkpoint(&Checkpoint::from_tensors(tensors.clone()), &Device::Cpu)
        .expect_err("missing tensor is an error");
    assert!(
        matches!(
            err,
            ModelError::Checkpoint(CheckpointError::MissingTensor { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("mask_decoder.iou_token.weight"));
    assert!(err.to_string().contains("[1, 256]"));

    tensors.insert(
        "mask_decoder.iou_token.weight".into(),
        Tensor::zeros((1, 255), DType::F32, &Device::Cpu).expect("zeros"),
    );
    let err = Sam::from_checkpoint(&Checkpoint::from_tensors(tensors), &Device::Cpu)
        .expect_err("wrong shape is an error");
    let message = err.to_string();
    assert!(
        message.contains("mask_decoder.iou_token.weight"),
        "{message}"
    );
    assert!(
        message.contains("[1, 255]") && message.contains("[1, 256]"),
        "{message}"
    );
}

fn shape_of(checkpoint: &Checkpoint, name: &str) -> Vec<usize> {
    // Ask with an impossible shape; the error reports the real one.
    match checkpoint.get(name, &[usize::MAX]) {
        Err(CheckpointError::ShapeMismatch { found, .. }) => found,
        other => panic!("unexpected {other:?}"),
    }
}
