//! The pipeline: `embed(image) -> Embedding` once per image, then
//! `decode(&Embedding, prompts) -> masks` per prompt.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::checkpoint::{Checkpoint, ParameterCounts};
use crate::cpu::profile::step;
use crate::error::{ModelError, Result};
use crate::image::{preprocess, scale_coords, Preprocessed};
use crate::layers::{host_values, Weights};
use crate::mask_decoder::cpu::{Dense, MaskDecoderCpu};
use crate::mask_decoder::{DecoderOutput, MaskDecoder};
use crate::masks::{low_res_extent, upscale_to_scored_mask, Rle};
use crate::polygon::DEFAULT_EPSILON;
use crate::polygon_regions::{mask_regions, Region};
use crate::prompt::{ObjectPrompt, LOW_RES_MASK_SIZE};
use crate::prompt_encoder::{PromptEncoder, ScaledPrompt};
use crate::tiny_vit::{TinyVit, EMBED_CHANNELS, EMBED_SIDE};

/// An encoded image: the (1, 256, 64, 64) embedding and the sizes needed to map prompts
/// in and masks out.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// (1, 256, 64, 64) float32 on the model's device.
    pub features: Tensor,
    /// (height, width) of the original image.
    pub original_size: (usize, usize),
    /// (height, width) of the resized image inside the 1024x1024 input.
    pub input_size: (usize, usize),
}

impl Embedding {
    /// Number of values in the feature tensor (256 * 64 * 64).
    pub const VALUES: usize = EMBED_CHANNELS * EMBED_SIDE * EMBED_SIDE;

    /// Bytes held by the feature tensor.
    pub fn size_bytes(&self) -> usize {
        Self::VALUES * std::mem::size_of::<f32>()
    }

    /// The features copied to the host, row-major (channel, row, column).
    pub fn to_host_f32(&self) -> Result<Vec<f32>> {
        Ok(self.features.flatten_all()?.to_vec1::<f32>()?)
    }

    /// An embedding rebuilt from [`Self::to_host_f32`]'s values on `device` (an embedding
    /// kept outside the process); `values` must hold exactly [`Self::VALUES`] numbers.
    pub fn from_host_f32(
        values: Vec<f32>,
        original_size: (usize, usize),
        input_size: (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        if values.len() != Self::VALUES {
            return Err(ModelError::ShapeMismatch {
                name: "embedding".into(),
                expected: vec![1, EMBED_CHANNELS, EMBED_SIDE, EMBED_SIDE],
                found: vec![values.len()],
            });
        }
        let features =
            Tensor::from_vec(values, (1, EMBED_CHANNELS, EMBED_SIDE, EMBED_SIDE), device)?;
        Ok(Self {
            features,
            original_size,
            input_size,
        })
    }
}

/// What to return for each object.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// Three candidate masks per object instead of one.
    pub multimask: bool,
    /// Also return each mask's 256x256 low-resolution logits.
    pub return_low_res_logits: bool,
    /// Also return each mask's regions and holes as outlines
    /// ([`mask_regions`](crate::polygon_regions::mask_regions)).
    pub return_polygons: bool,
}

/// One full-resolution mask and what is known about it.
#[derive(Debug, Clone)]
pub struct MaskOutput {
    /// Predicted IoU.
    pub score: f32,
    /// Foreground pixels.
    pub area: u64,
    /// Tight [x, y, w, h] of the foreground.
    pub bbox: [f32; 4],
    /// COCO compressed RLE of the mask.
    pub rle: Rle,
    /// The reference's stability score (`calculate_stability_score`, offset 1.0) on the
    /// full-resolution logits; 0 when no logit is above -1.
    pub stability_score: f32,
    /// 256x256 logits, row-major, when asked for.
    pub low_res_logits: Option<Vec<f32>>,
    /// Every region with its holes, outlines on pixel corners, when asked for.
    pub polygons: Option<Vec<Region>>,
}

/// The masks of one object, in the model's output order.
#[derive(Debug, Clone)]
pub struct ObjectMasks {
    /// One mask, or three with multimask output.
    pub masks: Vec<MaskOutput>,
}

/// Raw decoder output for one object: low-resolution logits and scores per mask.
#[derive(Debug, Clone)]
pub struct RawObjectMasks {
    /// Per mask, 256x256 logits row-major.
    pub low_res_logits: Vec<Vec<f32>>,
    /// Per mask, predicted IoU.
    pub scores: Vec<f32>,
}

/// MobileSAM: image encoder, prompt encoder and mask decoder on one device.
pub struct Sam {
    image_encoder: TinyVit,
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    device: Device,
    parameters: ParameterCounts,
    checkpoint_bytes: u64,
}

impl std::fmt::Debug for Sam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sam")
            .field("device", &self.device)
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

impl Sam {
    /// Loads a checkpoint file (`mobile_sam.pt` or `.safetensors`) onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::from_checkpoint(&Checkpoint::load(path)?, device)
    }

    /// Builds the model from checkpoint tensors already in memory. On the CPU the encoder
    /// and the decoder run the fused kernels of [`crate::cpu`].
    pub fn from_checkpoint(checkpoint: &Checkpoint, device: &Device) -> Result<Self> {
        let w = Weights::new(checkpoint, device);
        Ok(Self {
            image_encoder: TinyVit::load(&w.pp("image_encoder"))?,
            prompt_encoder: PromptEncoder::load(&w.pp("prompt_encoder"))?,
            mask_decoder: MaskDecoder::load(&w.pp("mask_decoder"))?,
            device: device.clone(),
            parameters: checkpoint.parameter_counts(),
            checkpoint_bytes: checkpoint.file_bytes(),
        })
    }

    /// Builds the model with candle tensor operations only, on any device: on the CPU, the
    /// slower reference that the fused kernels are checked against.
    pub fn from_checkpoint_tensor_ops(checkpoint: &Checkpoint, device: &Device) -> Result<Self> {
        let w = Weights::new(checkpoint, device);
        Ok(Self {
            image_encoder: TinyVit::load_tensor_ops(&w.pp("image_encoder"))?,
            prompt_encoder: PromptEncoder::load(&w.pp("prompt_encoder"))?,
            mask_decoder: MaskDecoder::load_tensor_ops(&w.pp("mask_decoder"))?,
            device: device.clone(),
            parameters: checkpoint.parameter_counts(),
            checkpoint_bytes: checkpoint.file_bytes(),
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Parameter counts per part, as in the checkpoint.
    pub fn parameter_counts(&self) -> ParameterCounts {
        self.parameters
    }

    /// Size of the checkpoint file the model came from (0 when built in memory).
    pub fn checkpoint_bytes(&self) -> u64 {
        self.checkpoint_bytes
    }

    /// The image encoder, for stage-by-stage inspection.
    pub fn image_encoder(&self) -> &TinyVit {
        &self.image_encoder
    }

    /// Preprocesses and encodes an RGB image.
    pub fn embed(&self, image: &image::RgbImage) -> Result<Embedding> {
        self.embed_preprocessed(&preprocess(image)?)
    }

    /// Encodes an already preprocessed image.
    pub fn embed_preprocessed(&self, input: &Preprocessed) -> Result<Embedding> {
        let features = self
            .image_encoder
            .forward_planar(&input.pixels, &self.device)?;
        Ok(Embedding {
            features,
            original_size: input.original_size,
            input_size: input.input_size,
        })
    }

    /// Runs prompt encoder and mask decoder for every object; objects with the same prompt
    /// shape (point count, box, mask input) are decoded together as one batch. Returns the
    /// low-resolution logits and scores per object, in input order.
    pub fn decode_raw(
        &self,
        embedding: &Embedding,
        objects: &[ObjectPrompt],
        multimask: bool,
    ) -> Result<Vec<RawObjectMasks>> {
        self.decode_logits(embedding, objects, multimask, false)
    }

    /// [`Sam::decode_raw`]; with `cropped`, the CPU decoder computes only the part of each
    /// logit map that the full-resolution mask reads ([`low_res_extent`]) and leaves the
    /// rest 0, for callers that do not return the low-resolution logits.
    fn decode_logits(
        &self,
        embedding: &Embedding,
        objects: &[ObjectPrompt],
        multimask: bool,
        cropped: bool,
    ) -> Result<Vec<RawObjectMasks>> {
        for (i, object) in objects.iter().enumerate() {
            object
                .validate()
                .map_err(|e| ModelError::InvalidPrompt(format!("object {i}: {}", strip(&e))))?;
        }
        let scaled: Vec<ScaledPrompt> =
            objects.iter().map(|o| scale_prompt(o, embedding)).collect();
        let mut results: Vec<Option<RawObjectMasks>> = vec![None; objects.len()];
        let mut groups: Vec<((usize, bool, bool), Vec<usize>)> = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let key = object.batch_key();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        if let Some(cpu) = self.mask_decoder.cpu() {
            let extent = cropped.then(|| low_res_extent(embedding.input_size));
            return scaled
                .iter()
                .map(|prompt| self.decode_one_cpu(cpu, embedding, prompt, multimask, extent))
                .collect();
        }
        for (_, members) in groups {
            let batch: Vec<&ScaledPrompt> = members.iter().map(|&i| &scaled[i]).collect();
            let out = self.decode_batch(embedding, &batch, multimask)?;
            let per_object = out
                .low_res_masks
                .to_dtype(DType::F32)?
                .flatten_from(2)?
                .to_vec3::<f32>()?;
            let scores = out.iou_predictions.to_vec2::<f32>()?;
            for ((index, masks), scores) in members.into_iter().zip(per_object).zip(scores) {
                results[index] = Some(RawObjectMasks {
                    low_res_logits: masks,
                    scores,
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| ModelError::InvalidPrompt("object was not decoded".into())))
            .collect()
    }

    /// One object through the fused CPU decoder.
    fn decode_one_cpu(
        &self,
        cpu: &MaskDecoderCpu,
        embedding: &Embedding,
        prompt: &ScaledPrompt,
        multimask: bool,
        extent: Option<(usize, usize)>,
    ) -> Result<RawObjectMasks> {
        let sparse = host_values(&self.prompt_encoder.sparse_embeddings(&[prompt])?)?;
        let (low_res_logits, scores) = if prompt.mask_input.is_some() {
            let dense = host_values(&self.prompt_encoder.dense_embeddings(&[prompt])?)?;
            cpu.forward(
                &embedding.features,
                self.prompt_encoder.dense_pe(),
                &sparse,
                Dense::Planar(&dense),
                multimask,
                extent,
            )?
        } else {
            let no_mask = self.prompt_encoder.no_mask_host()?;
            cpu.forward(
                &embedding.features,
                self.prompt_encoder.dense_pe(),
                &sparse,
                Dense::NoMask(&no_mask),
                multimask,
                extent,
            )?
        };
        Ok(RawObjectMasks {
            low_res_logits,
            scores,
        })
    }

    fn decode_batch(
        &self,
        embedding: &Embedding,
        batch: &[&ScaledPrompt],
        multimask: bool,
    ) -> Result<DecoderOutput> {
        let sparse = self.prompt_encoder.sparse_embeddings(batch)?;
        let dense = self.prompt_encoder.dense_embeddings(batch)?;
        self.mask_decoder.forward(
            &embedding.features,
            self.prompt_encoder.dense_pe(),
            &sparse,
            &dense,
            multimask,
        )
    }

    /// Decodes every object and postprocesses each mask to full resolution: upscale,
    /// threshold at 0, COCO RLE, area, bbox.
    pub fn decode(
        &self,
        embedding: &Embedding,
        objects: &[ObjectPrompt],
        options: DecodeOptions,
    ) -> Result<Vec<ObjectMasks>> {
        // Without low-resolution logits in the answer, only the part of them that the
        // full-resolution masks read is computed.
        let cropped = !options.return_low_res_logits;
        let raw = self.decode_logits(embedding, objects, options.multimask, cropped)?;
        raw.into_iter()
            .map(|object| {
                // Several masks (multimask) are postprocessed side by side: the upscale
                // runs in parallel bands, but the RLE of each is one pass on one thread.
                let masks = object
                    .low_res_logits
                    .into_par_iter()
                    .zip(object.scores)
                    .map(|(logits, score)| {
                        let mut out = postprocess(&logits, embedding, score, options)?;
                        if options.return_low_res_logits {
                            out.low_res_logits = Some(logits);
                        }
                        Ok(out)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(ObjectMasks { masks })
            })
            .collect()
    }
}

/// Full-resolution binary mask, its area, bbox and RLE, from one low-resolution logit map.
pub fn postprocess_mask(logits: &[f32], embedding: &Embedding, score: f32) -> Result<MaskOutput> {
    postprocess(logits, embedding, score, DecodeOptions::default())
}

/// [`postprocess_mask`], plus the mask's outlines when `options` ask for them.
fn postprocess(
    logits: &[f32],
    embedding: &Embedding,
    score: f32,
    options: DecodeOptions,
) -> Result<MaskOutput> {
    debug_assert_eq!(logits.len(), LOW_RES_MASK_SIZE * LOW_RES_MASK_SIZE);
    let (mask, stability_score) = step("postprocess upscale", || {
        upscale_to_scored_mask(logits, embedding.input_size, embedding.original_size)
    })?;
    let mut out = step("postprocess mask, RLE", || MaskOutput {
        score,
        area: mask.area(),
        bbox: mask.bbox(),
        rle: mask.to_rle(),
        stability_score,
        low_res_logits: None,
        polygons: None,
    });
    if options.return_polygons {
        out.polygons = Some(step("postprocess polygons", || {
            mask_regions(&mask.data, mask.height, mask.width, DEFAULT_EPSILON)
        }));
    }
    Ok(out)
}

/// Maps a prompt from original-image pixels to model-input pixels.
fn scale_prompt(object: &ObjectPrompt, embedding: &Embedding) -> ScaledPrompt {
    let scale = |x: f32, y: f32| scale_coords(x, y, embedding.original_size, embedding.input_size);
    ScaledPrompt {
        points: object
            .points
            .iter()
            .map(|p| {
                let (x, y) = scale(p.x, p.y);
                (x, y, p.label)
            })
            .collect(),
        bbox: object.bbox.map(|b| {
            let (x1, y1) = scale(b.x1, b.y1);
            let (x2, y2) = scale(b.x2, b.y2);
            [x1, y1, x2, y2]
        }),
        mask_input: object.mask_input.clone(),
    }
}

/// The message of an `InvalidPrompt` without its "invalid prompt: " prefix.
fn strip(e: &ModelError) -> String {
    match e {
        ModelError::InvalidPrompt(m) => m.clone(),
        other => other.to_string(),
    }
}
