//! [`VideoModel`]: SAM 2.1's tracking modules beside the image model ([`Sam`]), and the three
//! steps of `SAM2Base.track_step`: the SAM heads on a frame ([`VideoModel::heads`], as
//! `_forward_sam_heads`), the memory-conditioned features ([`VideoModel::condition`], as
//! `_prepare_memory_conditioned_features` once the memory is chosen) and a frame's new
//! memory ([`VideoModel::encode_memory`], as `_encode_new_memory`).

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};

use super::position::{sine_1d, sine_2d};
use crate::architecture::EMBED_SIDE;
use crate::candle::layers::{linear, Linear};
use crate::candle::memory_attention::MemoryAttention;
use crate::candle::memory_encoder::MemoryEncoder;
use crate::embedding::Embedding;
use crate::error::{ModelError, Result};
use crate::family::Family;
use crate::image::IMAGE_SIZE;
use crate::masks::upscale_stretched_logits;
use crate::prompt::LOW_RES_MASK_SIZE;
use crate::prompt_encoder::ScaledPrompt;
use crate::sam::Sam;
use crate::weights::{host_values, Weights};
use mobilesam_checkpoint::Checkpoint;

/// `NO_OBJ_SCORE`: every low-resolution logit of a frame whose object score is not above 0.
pub const NO_OBJECT_LOGIT: f32 = -1024.0;
/// `max_obj_ptrs_in_encoder` of every SAM 2.1 configuration.
pub const MAX_OBJ_PTRS: usize = 16;
/// Attention heads of the memory attention in every SAM 2.1 configuration.
const MEMORY_HEADS: usize = 1;
/// `sigmoid_scale_for_mem_enc`, `sigmoid_bias_for_mem_enc` of SAM 2.1.
const MASK_FOR_MEM_SCALE: f32 = 20.0;
const MASK_FOR_MEM_BIAS: f32 = -10.0;

/// What the SAM heads give for one object on one frame.
#[derive(Debug, Clone)]
pub struct HeadsOutput {
    /// The chosen mask's 256x256 logits (all [`NO_OBJECT_LOGIT`] when the object is absent).
    pub low_res_logits: Vec<f32>,
    /// The object-score logit (> 0: present).
    pub object_score_logit: f32,
    /// The object pointer (D values; `no_obj_ptr` when absent).
    pub obj_ptr: Vec<f32>,
}

/// One memory frame as memory attention reads it: features (mem_dim x 64 x 64, as stored:
/// bfloat16 values) and its temporal slot `t_pos` (0: a conditioning frame, else how many
/// frames back, counted so that the nearest has `num_maskmem - 1`).
pub struct MemoryFrame<'a> {
    /// `maskmem_features`, mem_dim x 64 x 64, bfloat16 bits.
    pub features: &'a [u16],
    /// The temporal slot.
    pub t_pos: usize,
}

/// SAM 2.1's video modules on the model's device, with the [`Sam`] they extend.
pub struct VideoModel {
    sam: Arc<Sam>,
    memory_encoder: MemoryEncoder,
    memory_attention: MemoryAttention,
    obj_ptr_proj: Vec<Linear>,
    obj_ptr_tpos_proj: Linear,
    no_obj_ptr: Vec<f32>,
    no_obj_embed_spatial: Vec<f32>,
    /// (num_maskmem, mem_dim).
    maskmem_tpos_enc: Vec<Vec<f32>>,
    /// (1, 4096, D): the image features' sine encoding, token-major.
    curr_pos: Tensor,
    /// (4096, mem_dim) token-major: the memory's sine encoding.
    memory_pos: Vec<f32>,
    dim: usize,
    mem_dim: usize,
}

impl VideoModel {
    /// Loads the tracking modules of a SAM 2.1 `checkpoint` for `sam`, the image model built
    /// from the same checkpoint. Any other family is refused.
    pub fn load(checkpoint: &Checkpoint, sam: Arc<Sam>) -> Result<Self> {
        if !matches!(sam.family(), Family::Sam2(_)) || sam.sam2_parts().is_none() {
            return Err(ModelError::UnsupportedCheckpoint(
                "video tracking needs a SAM 2.1 checkpoint".into(),
            ));
        }
        let w = Weights::new(checkpoint, sam.device());
        let dim = sam.embedding_channels();
        let memory_encoder = MemoryEncoder::load(&w.pp("memory_encoder"), dim)?;
        let mem_dim = memory_encoder.mem_dim();
        let num_maskmem = w.shape("maskmem_tpos_enc")?[0];
        let tpos = w.values("maskmem_tpos_enc", &[num_maskmem, 1, 1, mem_dim])?;
        let side = EMBED_SIDE;
        let curr_pos = Tensor::from_vec(sine_2d(dim, side), (1, dim, side * side), sam.device())?
            .transpose(1, 2)?
            .contiguous()?;
        let pos = sine_2d(mem_dim, side);
        let tokens = side * side;
        let mut memory_pos = vec![0f32; tokens * mem_dim];
        for c in 0..mem_dim {
            for t in 0..tokens {
                memory_pos[t * mem_dim + c] = pos[c * tokens + t];
            }
        }
        Ok(Self {
            memory_attention: MemoryAttention::load(
                &w.pp("memory_attention"),
                dim,
                mem_dim,
                MEMORY_HEADS,
                side,
            )?,
            memory_encoder,
            obj_ptr_proj: (0..3)
                .map(|i| linear(&w.pp("obj_ptr_proj").pp("layers").pp(i), dim, dim))
                .collect::<Result<Vec<_>>>()?,
            obj_ptr_tpos_proj: linear(&w.pp("obj_ptr_tpos_proj"), dim, mem_dim)?,
            no_obj_ptr: w.values("no_obj_ptr", &[1, dim])?,
            no_obj_embed_spatial: w.values("no_obj_embed_spatial", &[1, mem_dim])?,
            maskmem_tpos_enc: tpos.chunks(mem_dim).map(<[f32]>::to_vec).collect(),
            curr_pos,
            memory_pos,
            dim,
            mem_dim,
            sam,
        })
    }

    /// The image model.
    pub fn sam(&self) -> &Arc<Sam> {
        &self.sam
    }

    /// `num_maskmem`: memory frames per step (the current one included).
    pub fn num_maskmem(&self) -> usize {
        self.maskmem_tpos_enc.len()
    }

    /// Channels of a memory frame's features.
    pub fn mem_dim(&self) -> usize {
        self.mem_dim
    }

    /// Channels of the image features and object pointers.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn device(&self) -> &Device {
        self.sam.device()
    }

    /// The frame's image features (1, D, 64, 64) as the encoder gave them.
    pub(crate) fn image_features(&self, embedding: &Embedding) -> Result<Tensor> {
        if embedding.high_res().is_none() || embedding.channels() != self.dim {
            return Err(ModelError::Shape(format!(
                "a SAM 2.1 embedding of {} channels is needed for tracking",
                self.dim
            )));
        }
        embedding.tensor_on(self.device())
    }

    /// An initial conditioning frame's features: plus `no_mem_embed`.
    pub(crate) fn without_memory(&self, features: &Tensor) -> Result<Tensor> {
        let (encoder, _) = self.parts()?;
        encoder.with_no_memory(features)
    }

    fn parts(&self) -> Result<(&crate::candle::Sam2Encoder, &crate::candle::MaskDecoder)> {
        self.sam
            .sam2_parts()
            .ok_or_else(|| ModelError::UnsupportedCheckpoint("not a SAM 2.1 model".into()))
    }

    /// `_forward_sam_heads`: `pix_feat` (1, D, 64, 64), the prompt (`None`: a tracked frame,
    /// one empty point and the pad) with an optional 256x256 mask input, and `multimask`.
    pub(crate) fn heads(
        &self,
        pix_feat: &Tensor,
        embedding: &Embedding,
        prompt: Option<&ScaledPrompt>,
        mask_input: Option<Vec<f32>>,
        multimask: bool,
    ) -> Result<HeadsOutput> {
        let (_, decoder) = self.parts()?;
        let pe = self.sam.prompt_encoder();
        let sparse = match prompt {
            Some(p) => pe.sparse_embeddings(&[p])?,
            None => pe.padding_tokens(2)?,
        };
        let dense_prompt = ScaledPrompt {
            mask_input,
            ..ScaledPrompt::default()
        };
        let dense = pe.dense_embeddings(&[&dense_prompt])?;
        let (out, tokens) = decoder.forward_with_tokens(
            pix_feat,
            pe.dense_pe(),
            &sparse,
            &dense,
            embedding.high_res(),
            multimask,
        )?;
        let object_score_logit = match &out.object_score_logits {
            Some(t) => host_values(t)?
                .first()
                .copied()
                .unwrap_or(f32::NEG_INFINITY),
            None => return Err(ModelError::Shape("no object score from the decoder".into())),
        };
        let ious = host_values(&out.iou_predictions)?;
        let best = if multimask {
            let mut best = 0;
            for (i, v) in ious.iter().enumerate() {
                if *v > ious[best] {
                    best = i;
                }
            }
            best
        } else {
            0
        };
        let present = object_score_logit > 0.0;
        let low_res_logits = if present {
            host_values(&out.low_res_masks.narrow(1, best, 1)?)?
        } else {
            vec![NO_OBJECT_LOGIT; LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE]
        };
        let token_index = if multimask { best } else { 0 };
        let obj_ptr = if present {
            let mut x = tokens.narrow(1, token_index, 1)?.squeeze(1)?;
            for (i, layer) in self.obj_ptr_proj.iter().enumerate() {
                x = layer.forward(&x)?;
                if i + 1 < self.obj_ptr_proj.len() {
                    x = x.relu()?;
                }
            }
            host_values(&x)?
        } else {
            self.no_obj_ptr.clone()
        };
        Ok(HeadsOutput {
            low_res_logits,
            object_score_logit,
            obj_ptr,
        })
    }

    /// Memory attention over `memories` and object pointers `ptrs` ((signed temporal
    /// distance, pointer)); `max_ptrs` is `min(num_frames, max_obj_ptrs_in_encoder)`, whose
    /// `- 1` normalises the distances. `features` (1, D, 64, 64) -> (1, D, 64, 64).
    pub(crate) fn condition(
        &self,
        features: &Tensor,
        memories: &[MemoryFrame<'_>],
        ptrs: &[(i64, &[f32])],
        max_ptrs: usize,
    ) -> Result<Tensor> {
        let (mem_dim, dim) = (self.mem_dim, self.dim);
        let tokens = EMBED_SIDE * EMBED_SIDE;
        let num_maskmem = self.num_maskmem();
        let split = dim / mem_dim;
        let total = memories.len() * tokens + ptrs.len() * split;
        let mut memory = Vec::with_capacity(total * mem_dim);
        let mut pos = Vec::with_capacity(total * mem_dim);
        for m in memories {
            if m.features.len() != mem_dim * tokens || m.t_pos >= num_maskmem {
                return Err(ModelError::Shape("a memory frame of the wrong size".into()));
            }
            let tpos = &self.maskmem_tpos_enc[num_maskmem - m.t_pos - 1];
            for (t, token_pos) in self.memory_pos.chunks_exact(mem_dim).enumerate() {
                for (c, (p, tp)) in token_pos.iter().zip(tpos).enumerate() {
                    memory.push(bf16_value(m.features[c * tokens + t]));
                    pos.push(p + tp);
                }
            }
        }
        if !ptrs.is_empty() {
            let t_diff_max = max_ptrs.saturating_sub(1).max(1) as f32;
            let rel: Vec<f32> = ptrs.iter().map(|(p, _)| *p as f32 / t_diff_max).collect();
            let sine = Tensor::from_vec(sine_1d(&rel, dim), (ptrs.len(), dim), self.device())?;
            let obj_pos = host_values(&self.obj_ptr_tpos_proj.forward(&sine)?)?;
            for (i, (_, ptr)) in ptrs.iter().enumerate() {
                if ptr.len() != dim {
                    return Err(ModelError::Shape(
                        "an object pointer of the wrong size".into(),
                    ));
                }
                for s in 0..split {
                    memory.extend_from_slice(&ptr[s * mem_dim..(s + 1) * mem_dim]);
                    pos.extend_from_slice(&obj_pos[i * mem_dim..(i + 1) * mem_dim]);
                }
            }
        }
        let memory = Tensor::from_vec(memory, (1, total, mem_dim), self.device())?;
        let memory_pos = Tensor::from_vec(pos, (1, total, mem_dim), self.device())?;
        let curr = features.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let out = self.memory_attention.forward(
            &curr,
            &self.curr_pos,
            &memory,
            &memory_pos,
            ptrs.len() * split,
        )?;
        Ok(out
            .transpose(1, 2)?
            .reshape((1, dim, EMBED_SIDE, EMBED_SIDE))?)
    }

    /// `_encode_new_memory` on the frame's `features` (1, D, 64, 64) and its chosen
    /// low-resolution logits: upscaled to 1024x1024, binarised (`binarize`: a prompted
    /// frame, `binarize_mask_from_pts_for_mem_enc`) or through the sigmoid, scaled to
    /// +-10; `no_obj_embed_spatial` added when the object is absent. The result is rounded
    /// to bfloat16, as `SAM2VideoPredictor` stores it (mem_dim x 64 x 64 bits).
    pub(crate) fn encode_memory(
        &self,
        features: &Tensor,
        low_res_logits: &[f32],
        object_score_logit: f32,
        binarize: bool,
    ) -> Result<Vec<u16>> {
        let side = IMAGE_SIZE;
        let mut mask = upscale_stretched_logits(low_res_logits, (side, side))?;
        for v in &mut mask {
            let p = if binarize {
                if *v > 0.0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                1.0 / (1.0 + (-*v).exp())
            };
            *v = p * MASK_FOR_MEM_SCALE + MASK_FOR_MEM_BIAS;
        }
        let mask = Tensor::from_vec(mask, (1, 1, side, side), self.device())?;
        let mut out = self.memory_encoder.forward(features, &mask)?;
        if object_score_logit <= 0.0 {
            let add = Tensor::from_vec(
                self.no_obj_embed_spatial.clone(),
                (1, self.mem_dim, 1, 1),
                self.device(),
            )?;
            out = out.broadcast_add(&add)?;
        }
        let rounded = out.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        Ok(host_values(&rounded)?
            .into_iter()
            .map(|v| (v.to_bits() >> 16) as u16)
            .collect())
    }
}

/// A bfloat16 value (its bits) as `f32`.
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}
