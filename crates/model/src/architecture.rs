//! MobileSAM's fixed architecture, shared by both backends: TinyViT's stages as MobileSAM
//! builds them, the mask decoder's sizes, and the window attention's bias layout.

/// TinyViT channels per stage.
pub const EMBED_DIMS: [usize; 4] = [64, 128, 160, 320];
/// TinyViT blocks per stage.
pub const DEPTHS: [usize; 4] = [2, 2, 6, 2];
/// Attention heads per stage (stage 0 is convolutional and has none).
pub const NUM_HEADS: [usize; 4] = [2, 4, 5, 10];
/// Attention window side per stage.
pub const WINDOW_SIZES: [usize; 4] = [7, 7, 14, 7];
/// Hidden width of a block's MLP, relative to its channels.
pub const MLP_RATIO: usize = 4;
/// Expansion of the convolutional stage's inverted residual blocks.
pub const MBCONV_EXPAND: usize = 4;
/// Kernel side of the attention blocks' depthwise local convolution.
pub const LOCAL_CONV: usize = 3;
/// Channels of the image embedding.
pub const EMBED_CHANNELS: usize = 256;
/// Side of the image embedding.
pub const EMBED_SIDE: usize = 64;

/// Side of stage `stage`'s token grid (the patch embedding divides the input by 4, each
/// downsample but the one into the last stage by 2).
pub fn stage_resolution(stage: usize) -> usize {
    let patches = crate::image::IMAGE_SIZE / 4;
    patches >> if stage == 3 { 2 } else { stage }
}

/// Stride of the depthwise convolution of the downsample into a stage of `out_dim`
/// channels: TinyViT keeps the resolution into its widest stages.
pub fn merge_stride(out_dim: usize) -> usize {
    if matches!(out_dim, 320 | 448 | 576) {
        1
    } else {
        2
    }
}

/// Transformer width of the mask decoder.
pub const DECODER_DIM: usize = 256;
/// Mask tokens: one single-mask output plus three multimask outputs.
pub const NUM_MASK_TOKENS: usize = 4;
/// Hidden width of the IoU prediction head.
pub const IOU_HIDDEN: usize = 256;
/// Blocks of the two-way transformer.
pub const TRANSFORMER_DEPTH: usize = 2;
/// Heads of every two-way transformer attention.
pub const TRANSFORMER_HEADS: usize = 8;
/// Hidden width of the two-way transformer's MLP.
pub const TRANSFORMER_MLP_DIM: usize = 2048;
/// Channel reduction of the cross-attentions.
pub const CROSS_ATTENTION_DOWNSAMPLE: usize = 2;

/// For a `window x window` attention: the index into the learned per-offset biases of
/// every (query, key) pair, row-major, and the number of distinct offsets. Offsets
/// (|dy|, |dx|) are numbered in order of first appearance, as TinyViT does.
pub fn attention_bias_indices(window: usize) -> (Vec<usize>, usize) {
    let n = window * window;
    let mut offsets = std::collections::HashMap::new();
    let mut indices = Vec::with_capacity(n * n);
    for p1 in 0..n {
        for p2 in 0..n {
            let offset = (
                (p1 / window).abs_diff(p2 / window),
                (p1 % window).abs_diff(p2 % window),
            );
            let next = offsets.len();
            indices.push(*offsets.entry(offset).or_insert(next));
        }
    }
    (indices, offsets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_has_one_bias_per_distinct_offset() {
        let (indices, count) = attention_bias_indices(7);
        assert_eq!(count, 49);
        assert_eq!(indices.len(), 49 * 49);
        assert_eq!(indices[0], 0, "a token and itself: offset (0, 0) first");
        assert_eq!(indices[1], 1, "the next column: offset (0, 1)");
        assert_eq!(indices[7 * 49], indices[7], "(1, 0) both ways");
    }

    #[test]
    fn stages_halve_the_grid_except_into_the_last() {
        let sides: Vec<usize> = (0..4).map(stage_resolution).collect();
        assert_eq!(sides, [256, 128, 64, 64]);
        assert_eq!(merge_stride(EMBED_DIMS[3]), 1);
        assert_eq!(merge_stride(EMBED_DIMS[1]), 2);
    }
}
