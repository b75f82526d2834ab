//! [`Family`]: which SAM a checkpoint holds, read from its tensor names and shapes (never
//! from the file name): MobileSAM (TinyViT encoder), Meta's SAM ViT-B/L/H (any size the
//! shapes describe) or SAM 2.1 (Hiera-T/S/B+/L, [`crate::hiera_config`]). SAM 2.0
//! checkpoints are recognised and refused; anything else is refused with the top-level
//! prefixes that were found.

use std::collections::BTreeSet;

use mobilesam_checkpoint::Checkpoint;

use crate::error::{ModelError, Result};
pub use crate::hiera_config::{HieraConfig, HieraSize};

/// Side of the patch grid of a 1024x1024 input with 16x16 patches.
pub const VIT_GRID: usize = 64;
/// Window side of SAM ViT's windowed attention blocks.
pub const VIT_WINDOW: usize = 14;

/// The model family of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Family {
    /// MobileSAM: TinyViT image encoder (`image_encoder.patch_embed.seq.0.c.weight`).
    MobileSam,
    /// Meta's segment-anything 1.0 ViT image encoder.
    SamVit(VitConfig),
    /// Meta's SAM 2.1: Hiera trunk, FPN neck, high-resolution features into the decoder.
    Sam2(HieraConfig),
}

/// Named sizes of SAM ViT (the encoder width decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VitSize {
    /// ViT-B, width 768.
    B,
    /// ViT-L, width 1024.
    L,
    /// ViT-H, width 1280.
    H,
    /// Any other width (reduced test models): everything read from the shapes.
    Custom,
}

/// SAM ViT's hyperparameters, all derived from tensor shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VitConfig {
    /// Named size.
    pub size: VitSize,
    /// Encoder width C (`image_encoder.pos_embed` [1, 64, 64, C]).
    pub width: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads (C / `rel_pos_h.shape[1]`).
    pub heads: usize,
    /// Indices of the global-attention blocks (`rel_pos_h` [127, .]); the others attend in
    /// 14x14 windows (`rel_pos_h` [27, .]).
    pub global_blocks: Vec<usize>,
}

impl VitConfig {
    /// The window side of block `i`: `None` for global attention.
    pub fn window(&self, block: usize) -> Option<usize> {
        (!self.global_blocks.contains(&block)).then_some(VIT_WINDOW)
    }
}

impl Family {
    /// Detects the family of `checkpoint`.
    pub fn detect(checkpoint: &Checkpoint) -> Result<Self> {
        Self::detect_with(&checkpoint.names(), |name| {
            checkpoint.shape(name).map(<[usize]>::to_vec)
        })
    }

    /// Detects the family from tensor `names` and a shape look-up (for tests and other
    /// containers).
    pub fn detect_with(names: &[&str], shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Self> {
        let has = |name: &str| names.contains(&name);
        if has("image_encoder.trunk.patch_embed.proj.weight")
            && names.iter().any(|n| n.starts_with("sam_mask_decoder."))
        {
            let v21 = names.iter().any(|n| {
                n.starts_with("no_obj_embed_spatial") || n.starts_with("obj_ptr_tpos_proj.")
            });
            if !v21 {
                return Err(ModelError::UnsupportedCheckpoint(
                    "a SAM 2.0 checkpoint (no `no_obj_embed_spatial`, no `obj_ptr_tpos_proj`): \
                     only SAM 2.1 is served; use the sam2.1_hiera_*.pt files"
                        .into(),
                ));
            }
            return HieraConfig::detect(names, &shape).map(Family::Sam2);
        }
        if has("image_encoder.patch_embed.seq.0.c.weight") {
            return Ok(Family::MobileSam);
        }
        if has("image_encoder.blocks.0.attn.rel_pos_h") {
            return vit_config(names, &shape).map(Family::SamVit);
        }
        let prefixes: BTreeSet<&str> = names
            .iter()
            .map(|n| n.split('.').next().unwrap_or(n))
            .collect();
        let found: Vec<&str> = prefixes.into_iter().collect();
        Err(ModelError::UnsupportedCheckpoint(format!(
            "not a MobileSAM, SAM ViT or SAM 2 checkpoint: {} tensors with top-level prefixes [{}]",
            names.len(),
            found.join(", ")
        )))
    }

    /// The family's name as the API reports it: `mobile_sam`, `sam_vit_b`, `sam_vit_l`,
    /// `sam_vit_h`, or `sam_vit` for other sizes.
    pub fn name(&self) -> &'static str {
        match self {
            Family::MobileSam => "mobile_sam",
            Family::SamVit(c) => match c.size {
                VitSize::B => "sam_vit_b",
                VitSize::L => "sam_vit_l",
                VitSize::H => "sam_vit_h",
                VitSize::Custom => "sam_vit",
            },
            Family::Sam2(c) => c.size.name(),
        }
    }

    /// Whether the family has SAM 2's memory bank (video tracking with memory).
    pub fn memory_tracking(&self) -> bool {
        matches!(self, Family::Sam2(_))
    }

    /// A human-readable description (`SAM ViT-B (width 768, 12 blocks, 12 heads, global
    /// attention in blocks [2, 5, 8, 11])`).
    pub fn describe(&self) -> String {
        match self {
            Family::MobileSam => "MobileSAM (TinyViT)".into(),
            Family::SamVit(c) => {
                let size = match c.size {
                    VitSize::B => "ViT-B",
                    VitSize::L => "ViT-L",
                    VitSize::H => "ViT-H",
                    VitSize::Custom => "ViT (custom size)",
                };
                format!(
                    "SAM {size} (width {}, {} blocks, {} heads, global attention in blocks {:?})",
                    c.width, c.depth, c.heads, c.global_blocks
                )
            }
            Family::Sam2(c) => c.describe(),
        }
    }
}

/// Widths of the prompt encoder and mask decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderWidths {
    /// Prompt tokens, dense embeddings, decoder transformer (256 officially).
    pub dim: usize,
    /// Hidden width of the two-way transformer's MLP (2048 officially).
    pub mlp_dim: usize,
    /// Hidden width of the IoU head (256 officially).
    pub iou_hidden: usize,
}

impl DecoderWidths {
    /// MobileSAM's fixed widths ([`crate::architecture`]).
    pub const MOBILE_SAM: Self = Self {
        dim: crate::architecture::DECODER_DIM,
        mlp_dim: crate::architecture::TRANSFORMER_MLP_DIM,
        iou_hidden: crate::architecture::IOU_HIDDEN,
    };

    /// The widths of `family`: MobileSAM's constants, or for SAM ViT read from
    /// `mask_decoder.iou_token.weight` [1, dim], `...transformer.layers.0.mlp.lin1.weight`
    /// [mlp, dim] and `...iou_prediction_head.layers.0.weight` [hidden, dim].
    pub fn of(family: &Family, checkpoint: &Checkpoint) -> Result<Self> {
        let prefix = match family {
            Family::MobileSam => return Ok(Self::MOBILE_SAM),
            Family::SamVit(_) => "mask_decoder",
            Family::Sam2(_) => "sam_mask_decoder",
        };
        let dim_of = |name: &str, axis: usize| -> Result<usize> {
            match checkpoint.shape(name) {
                Some(&[a, b]) if a > 0 && b > 0 => Ok([a, b][axis]),
                Some(s) => Err(ModelError::UnsupportedCheckpoint(format!(
                    "`{name}` has shape {s:?}, expected 2 non-zero dimensions"
                ))),
                None => Err(mobilesam_checkpoint::CheckpointError::MissingTensor {
                    name: name.into(),
                    expected: vec![],
                }
                .into()),
            }
        };
        let dim = dim_of(&format!("{prefix}.iou_token.weight"), 1)?;
        if dim % 8 != 0 {
            return Err(ModelError::UnsupportedCheckpoint(format!(
                "`{prefix}.iou_token.weight` has width {dim}, not a multiple of 8"
            )));
        }
        // segment-anything names the transformer's MLP `lin1`/`lin2`, sam2 `layers.0`/`.1`.
        let mlp = match family {
            Family::Sam2(_) => "mlp.layers.0",
            _ => "mlp.lin1",
        };
        Ok(Self {
            dim,
            mlp_dim: dim_of(&format!("{prefix}.transformer.layers.0.{mlp}.weight"), 0)?,
            iou_hidden: dim_of(&format!("{prefix}.iou_prediction_head.layers.0.weight"), 0)?,
        })
    }
}

/// SAM ViT's hyperparameters from the shapes.
fn vit_config(names: &[&str], shape: &impl Fn(&str) -> Option<Vec<usize>>) -> Result<VitConfig> {
    let bad = |what: String| {
        Err(ModelError::UnsupportedCheckpoint(format!(
            "SAM ViT checkpoint: {what}"
        )))
    };
    let pos = "image_encoder.pos_embed";
    let width = match shape(pos) {
        Some(s) if s.len() == 4 && s[..3] == [1, VIT_GRID, VIT_GRID] && s[3] > 0 => s[3],
        Some(s) => return bad(format!("`{pos}` has shape {s:?}, expected [1, 64, 64, C]")),
        None => return bad(format!("no `{pos}`")),
    };
    let depth = (0..)
        .take_while(|i| {
            let name = format!("image_encoder.blocks.{i}.attn.rel_pos_h");
            names.contains(&name.as_str())
        })
        .count();
    let mut heads = None;
    let mut global_blocks = Vec::new();
    for i in 0..depth {
        for axis in ["h", "w"] {
            let name = format!("image_encoder.blocks.{i}.attn.rel_pos_{axis}");
            let s = shape(&name).unwrap_or_default();
            let wrong = |why: &str| bad(format!("`{name}` has shape {s:?}: {why}"));
            let (span, head_dim) = match s.as_slice() {
                &[span, head_dim] if head_dim > 0 && width % head_dim == 0 => (span, head_dim),
                _ => return wrong(&format!("expected [27 or 127, C / heads], C = {width}")),
            };
            let block_heads = width / head_dim;
            if *heads.get_or_insert(block_heads) != block_heads {
                return wrong("its head width differs from block 0's");
            }
            let global = if span == 2 * VIT_GRID - 1 {
                true
            } else if span == 2 * VIT_WINDOW - 1 {
                false
            } else {
                return wrong("the span is neither 127 (global) nor 27 (window 14)");
            };
            if axis == "h" && global {
                global_blocks.push(i);
            }
        }
    }
    let size = match width {
        768 => VitSize::B,
        1024 => VitSize::L,
        1280 => VitSize::H,
        _ => VitSize::Custom,
    };
    Ok(VitConfig {
        size,
        width,
        depth,
        heads: heads.unwrap_or(1),
        global_blocks,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn detect(tensors: &[(&str, Vec<usize>)]) -> Result<Family> {
        let map: HashMap<&str, Vec<usize>> = tensors.iter().cloned().collect();
        let names: Vec<&str> = tensors.iter().map(|(n, _)| *n).collect();
        Family::detect_with(&names, |n| map.get(n).cloned())
    }

    fn vit(
        width: usize,
        depth: usize,
        heads: usize,
        global: &[usize],
    ) -> Vec<(String, Vec<usize>)> {
        let mut t = vec![(
            "image_encoder.pos_embed".to_string(),
            vec![1, 64, 64, width],
        )];
        for i in 0..depth {
            let span = if global.contains(&i) { 127 } else { 27 };
            for axis in ["h", "w"] {
                t.push((
                    format!("image_encoder.blocks.{i}.attn.rel_pos_{axis}"),
                    vec![span, width / heads],
                ));
            }
        }
        t.push(("mask_decoder.iou_token.weight".into(), vec![1, 256]));
        t
    }

    fn detect_owned(t: &[(String, Vec<usize>)]) -> Result<Family> {
        let borrowed: Vec<(&str, Vec<usize>)> =
            t.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        detect(&borrowed)
    }

    #[test]
    fn official_vit_sizes_are_named_and_read_from_shapes() {
        for (width, depth, heads, global, name) in [
            (768, 12, 12, vec![2, 5, 8, 11], "sam_vit_b"),
            (1024, 24, 16, vec![5, 11, 17, 23], "sam_vit_l"),
            (1280, 32, 16, vec![7, 15, 23, 31], "sam_vit_h"),
        ] {
            let family = detect_owned(&vit(width, depth, heads, &global)).expect("detected");
            assert_eq!(family.name(), name);
            let Family::SamVit(c) = family else {
                panic!("not a ViT")
            };
            assert_eq!((c.width, c.depth, c.heads), (width, depth, heads));
            assert_eq!(c.global_blocks, global);
            assert_eq!(c.window(global[0]), None);
            assert_eq!(c.window(0), Some(14));
        }
    }

    #[test]
    fn a_reduced_vit_is_custom() {
        let family = detect_owned(&vit(32, 4, 2, &[1, 3])).expect("detected");
        assert_eq!(family.name(), "sam_vit");
        assert!(family.describe().contains("width 32, 4 blocks, 2 heads"));
    }

    #[test]
    fn mobilesam_is_recognised() {
        let family = detect(&[
            (
                "image_encoder.patch_embed.seq.0.c.weight",
                vec![32, 3, 3, 3],
            ),
            ("mask_decoder.iou_token.weight", vec![1, 256]),
        ]);
        assert_eq!(family.ok(), Some(Family::MobileSam));
    }

    #[test]
    fn sam2_0_is_refused_and_sam2_1_detected() {
        let mut tensors = vec![
            (
                "image_encoder.trunk.patch_embed.proj.weight",
                vec![96, 3, 7, 7],
            ),
            ("sam_mask_decoder.iou_token.weight", vec![1, 256]),
        ];
        let err = detect(&tensors).map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("a SAM 2.0 checkpoint") && e.contains("sam2.1")),
            "{err:?}"
        );
        tensors.push(("no_obj_embed_spatial", vec![1, 64]));
        // SAM 2.1 from here on: HieraConfig::detect reads the rest (see hiera_config's tests).
        let err = detect(&tensors).map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("SAM 2.1 checkpoint")),
            "{err:?}"
        );
    }

    #[test]
    fn anything_else_is_refused_with_its_prefixes() {
        let err = detect(&[
            ("model.0.conv.weight", vec![16, 3, 3, 3]),
            ("head.bias", vec![80]),
        ])
        .map_err(|e| e.to_string());
        let Err(message) = err else {
            panic!("accepted")
        };
        assert!(
            message.contains("top-level prefixes [head, model]"),
            "{message}"
        );
    }

    #[test]
    fn inconsistent_vit_shapes_name_the_tensor() {
        let mut t = vit(32, 2, 2, &[1]);
        t[1].1 = vec![30, 16];
        let err = detect_owned(&t).map_err(|e| e.to_string());
        let Err(message) = err else {
            panic!("accepted")
        };
        assert!(
            message.contains("image_encoder.blocks.0.attn.rel_pos_h")
                && message.contains("[30, 16]"),
            "{message}"
        );
    }
}
