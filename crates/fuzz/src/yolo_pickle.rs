//! The module-walking reader of Ultralytics checkpoints: the pickle of a `torch.save` zip
//! (`data.pkl`) run by the bounded pickle reader, then the pickled `DetectionModel` walked
//! for its modules, tensors, `yaml` and `names`. Hostile pickles must give an error, never
//! a panic, an abort or an allocation out of proportion to the input.

use mobilesam_detector::checkpoint::read_model_pickle;

/// Parses `data` as a checkpoint's pickle; an accepted one must describe a model.
pub fn run(data: &[u8]) {
    let Ok(parsed) = read_model_pickle(data) else {
        return;
    };
    assert_eq!(parsed.model.class, "DetectionModel");
    assert!(!parsed.layers.is_empty(), "an architecture without layers");
    assert!(!parsed.names.is_empty(), "a model without classes");
    assert!(
        parsed.names.len() <= data.len().max(100_000),
        "more class names than the input could hold"
    );
}
