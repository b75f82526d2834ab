//! The checkpoint readers: `torch.save` zips (`.pt`) and `.safetensors`, recognised by
//! content. Malformed files must give an error, never a panic, an abort or an allocation
//! out of proportion to the file.

use mobilesam_checkpoint::Checkpoint;

/// Reads `data` as a checkpoint; any error is fine, any tensor read must be complete.
pub fn run(data: &[u8]) {
    let Ok(checkpoint) = Checkpoint::from_bytes(data, "fuzz input") else {
        return;
    };
    for name in checkpoint.names() {
        assert!(!name.is_empty() || checkpoint.names().len() == 1);
    }
    let counts = checkpoint.parameter_counts();
    assert!(
        counts.total <= data.len() as u64 * 8,
        "more parameters than the file has bits"
    );
}
