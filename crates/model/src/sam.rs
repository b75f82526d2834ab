//! The pipeline: `embed(image) -> Embedding` once per image, then
//! `decode(&Embedding, prompts) -> masks` per prompt.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::backend::Backend;
use crate::embedding::{Embedding, HighResFeatures};
use crate::error::{ModelError, Result};
use crate::family::{DecoderWidths, Family};
use crate::fused::mask_decoder::Dense;
use crate::image::stretch::preprocess_stretched;
use crate::image::{preprocess, scale_coords, Preprocessed, IMAGE_SIZE};
use crate::masks::polygon::DEFAULT_EPSILON;
use crate::masks::regions::{mask_regions, Region};
use crate::masks::{low_res_extent, upscale_stretched_to_scored_mask, upscale_to_scored_mask, Rle};
use crate::prompt::{ObjectPrompt, LOW_RES_MASK_SIZE};
use crate::prompt_encoder::{PromptEncoder, ScaledPrompt, TokenOrder};
use crate::weights::{host_values, Weights};
use crate::{candle, fused};
use mobilesam_checkpoint::{Checkpoint, ParameterCounts};
use mobilesam_kernels::layout::to_channels_last;
use mobilesam_kernels::profile::step;

/// Receives the encoder's intermediate results ("patch_embed", "layers.0" ... "layers.3"),
/// channels-last, whichever the backend.
pub use crate::fused::tiny_vit::Observer as StageObserver;

/// What to return for each object.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// Three candidate masks per object instead of one.
    pub multimask: bool,
    /// Also return each mask's 256x256 low-resolution logits.
    pub return_low_res_logits: bool,
    /// Also return each mask's regions and holes as outlines
    /// ([`mask_regions`](crate::masks::regions::mask_regions)).
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
    /// SAM 2: the object-score logit (> 0: the object is present). `SAM2ImagePredictor`
    /// reports it nowhere; the video tracker uses it.
    pub object_score_logit: Option<f32>,
}

/// The candle image encoder of the checkpoint's family.
enum CandleEncoder {
    TinyVit(Box<candle::TinyVit>),
    Vit(Box<candle::Vit>),
    Hiera(Box<candle::Sam2Encoder>),
}

impl CandleEncoder {
    /// The image embedding and, for SAM 2, the high-resolution features.
    fn forward_stages(
        &self,
        x: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<(Tensor, Option<HighResFeatures>)> {
        Ok(match self {
            CandleEncoder::TinyVit(e) => (e.forward_stages(x, observe)?, None),
            CandleEncoder::Vit(e) => (e.forward_stages(x, observe)?, None),
            CandleEncoder::Hiera(e) => {
                let features = e.forward_stages(x, observe)?;
                (features.image_embed, Some(features.high_res))
            }
        })
    }
}

/// The image encoder and mask decoder of the chosen [`Backend`].
enum Engine {
    Candle {
        encoder: CandleEncoder,
        decoder: Box<candle::MaskDecoder>,
        /// SAM ViT at the official widths on the CPU: its mask decoder is MobileSAM's, so
        /// the fused one decodes (the encoder stays on candle).
        fused_decoder: Option<FusedDecoder>,
    },
    Fused {
        encoder: Box<fused::TinyVit>,
        decoder: FusedDecoder,
    },
}

/// The fused CPU mask decoder and the prompt encoder's "no mask" embedding it adds.
struct FusedDecoder {
    decoder: Box<fused::MaskDecoder>,
    /// One value per channel.
    no_mask: Vec<f32>,
}

impl FusedDecoder {
    fn load(w: &Weights, prompt_encoder: &PromptEncoder, sam2: bool) -> Result<Self> {
        Ok(Self {
            decoder: Box::new(fused::MaskDecoder::load(
                w,
                &host_values(prompt_encoder.dense_pe())?,
                sam2,
            )?),
            no_mask: prompt_encoder.no_mask_host()?,
        })
    }
}

/// MobileSAM, SAM ViT or SAM 2.1 (the checkpoint's [`Family`]): image encoder, prompt
/// encoder and mask decoder on one device.
pub struct Sam {
    engine: Engine,
    family: Family,
    prompt_encoder: PromptEncoder,
    device: Device,
    parameters: ParameterCounts,
    checkpoint_bytes: u64,
}

impl std::fmt::Debug for Sam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sam")
            .field("device", &self.device)
            .field("family", &self.family.name())
            .field("backend", &self.backend())
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

impl Sam {
    /// Loads a checkpoint file (`mobile_sam.pt` or `.safetensors`) onto `device`, with the
    /// device's default backend.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::from_checkpoint(&Checkpoint::load(path)?, device)
    }

    /// Builds the model from checkpoint tensors already in memory, with the default
    /// backend for the device and the checkpoint's family
    /// ([`Backend::default_for_family`]: fused on the CPU, where SAM ViT and SAM 2.1 run
    /// their encoders on candle and, at the official widths, their decoders fused; candle
    /// elsewhere).
    pub fn from_checkpoint(checkpoint: &Checkpoint, device: &Device) -> Result<Self> {
        let family = Family::detect(checkpoint)?;
        Self::with_backend(
            checkpoint,
            device,
            Backend::default_for_family(device, &family),
        )
    }

    /// Builds the model with `backend`; an error when it cannot run on `device`. The
    /// fused kernels implement MobileSAM's TinyViT only: SAM ViT and SAM 2.1 checkpoints
    /// run their encoders on candle whatever `backend` says ([`Sam::backend`] tells which
    /// runs). SAM ViT's mask decoder is MobileSAM's and SAM 2.1's adds a few steps to it:
    /// with `backend` fused and the official widths (256), the fused decoder runs them on
    /// the CPU ([`Sam::decoder_backend`]).
    pub fn with_backend(
        checkpoint: &Checkpoint,
        device: &Device,
        backend: Backend,
    ) -> Result<Self> {
        backend.check_device(device)?;
        let family = Family::detect(checkpoint)?;
        let requested = backend;
        let backend = match family {
            Family::MobileSam => backend,
            Family::SamVit(_) | Family::Sam2(_) => Backend::Candle,
        };
        let w = Weights::new(checkpoint, device);
        let widths = DecoderWidths::of(&family, checkpoint)?;
        let sam2 = matches!(family, Family::Sam2(_));
        let (prompt, order, mask) = if sam2 {
            ("sam_prompt_encoder", TokenOrder::Sam2, "sam_mask_decoder")
        } else {
            ("prompt_encoder", TokenOrder::Sam, "mask_decoder")
        };
        let prompt_encoder = PromptEncoder::load(&w.pp(prompt), widths.dim, order)?;
        let (encoder, decoder) = (w.pp("image_encoder"), w.pp(mask));
        let engine = match backend {
            Backend::Candle => Engine::Candle {
                encoder: match &family {
                    Family::MobileSam => {
                        CandleEncoder::TinyVit(Box::new(candle::TinyVit::load(&encoder)?))
                    }
                    Family::SamVit(config) => {
                        CandleEncoder::Vit(Box::new(candle::Vit::load(&encoder, config)?))
                    }
                    Family::Sam2(config) => {
                        CandleEncoder::Hiera(Box::new(candle::Sam2Encoder::load(&w, config)?))
                    }
                },
                decoder: Box::new(candle::MaskDecoder::load(&decoder, &widths, sam2)?),
                fused_decoder: match family {
                    Family::SamVit(_) | Family::Sam2(_)
                        if device.is_cpu()
                            && requested == Backend::Fused
                            && widths == DecoderWidths::MOBILE_SAM =>
                    {
                        Some(FusedDecoder::load(&decoder, &prompt_encoder, sam2)?)
                    }
                    _ => None,
                },
            },
            Backend::Fused => Engine::Fused {
                encoder: Box::new(fused::TinyVit::load(&encoder)?),
                decoder: FusedDecoder::load(&decoder, &prompt_encoder, false)?,
            },
        };
        Ok(Self {
            engine,
            family,
            prompt_encoder,
            device: device.clone(),
            parameters: checkpoint.parameter_counts(),
            checkpoint_bytes: checkpoint.file_bytes(),
        })
    }

    /// The backend the model runs.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Candle { .. } => Backend::Candle,
            Engine::Fused { .. } => Backend::Fused,
        }
    }

    /// The backend the mask decoder runs: [`Sam::backend`]'s, but fused for SAM ViT and
    /// SAM 2.1 at the official widths on the CPU when fused was asked for.
    pub fn decoder_backend(&self) -> Backend {
        match self.engine {
            Engine::Candle {
                fused_decoder: Some(_),
                ..
            }
            | Engine::Fused { .. } => Backend::Fused,
            Engine::Candle { .. } => Backend::Candle,
        }
    }

    /// The prompt encoder (the video tracker encodes its prompts and padding itself).
    pub(crate) fn prompt_encoder(&self) -> &PromptEncoder {
        &self.prompt_encoder
    }

    /// SAM 2.1's image encoder and decoder on candle; `None` for the other families.
    pub(crate) fn sam2_parts(&self) -> Option<(&candle::Sam2Encoder, &candle::MaskDecoder)> {
        match &self.engine {
            Engine::Candle {
                encoder: CandleEncoder::Hiera(encoder),
                decoder,
                ..
            } => Some((encoder, decoder)),
            _ => None,
        }
    }

    /// The checkpoint's model family.
    pub fn family(&self) -> &Family {
        &self.family
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

    /// Channels of this model's embeddings: its prompt width (256 in the official models).
    pub fn embedding_channels(&self) -> usize {
        self.prompt_encoder.dim()
    }

    /// (height, width) of a `height` x `width` image inside the 1024x1024 input, as this
    /// family's preprocessing places it: the whole input for SAM 2 (stretched), the long
    /// side at 1024 otherwise ([`crate::image::preprocess_shape`]).
    pub fn input_size(&self, height: usize, width: usize) -> (usize, usize) {
        let side = crate::image::IMAGE_SIZE;
        match self.family {
            Family::Sam2(_) => (side, side),
            _ => crate::image::preprocess_shape(height, width, side),
        }
    }

    /// Preprocesses and encodes an RGB image.
    pub fn embed(&self, image: &image::RgbImage) -> Result<Embedding> {
        self.embed_preprocessed(&self.preprocess(image)?)
    }

    /// The family's preprocessing: SAM's (long side to 1024, pad;
    /// [`crate::image::preprocess`]) or SAM 2's (stretched to 1024x1024;
    /// [`crate::image::stretch::preprocess_stretched`]).
    pub fn preprocess(&self, image: &image::RgbImage) -> Result<Preprocessed> {
        match self.family {
            Family::Sam2(_) => preprocess_stretched(image),
            _ => preprocess(image),
        }
    }

    /// Encodes an already preprocessed image.
    pub fn embed_preprocessed(&self, input: &Preprocessed) -> Result<Embedding> {
        self.encode(input, None)
    }

    /// [`Sam::embed_preprocessed`], handing each stage's output to `observe`, channels-last
    /// whichever the backend: for parity debugging and stage timing.
    pub fn embed_observed(
        &self,
        input: &Preprocessed,
        observe: StageObserver,
    ) -> Result<Embedding> {
        self.encode(input, Some(observe))
    }

    fn encode(&self, input: &Preprocessed, observe: Option<StageObserver>) -> Result<Embedding> {
        let (original, resized) = (input.original_size, input.input_size);
        match &self.engine {
            Engine::Fused { encoder, .. } => {
                let values = encoder.forward(&input.pixels, observe)?;
                Embedding::channels_last(values, original, resized)
            }
            Engine::Candle { encoder, .. } => {
                let shape = (1, 3, IMAGE_SIZE, IMAGE_SIZE);
                let x = Tensor::from_slice(&input.pixels, shape, &self.device)?;
                let (features, high_res) = match observe {
                    None => encoder.forward_stages(&x, &mut |_, _| {})?,
                    Some(observe) => {
                        let mut failed = None;
                        let features =
                            encoder.forward_stages(&x, &mut |name, t| match channels_last(t) {
                                Ok((values, shape)) => observe(name, &values, shape),
                                Err(e) => failed = Some(e),
                            })?;
                        if let Some(e) = failed {
                            return Err(e);
                        }
                        features
                    }
                };
                match high_res {
                    Some(high_res) => Embedding::with_high_res(features, high_res, original),
                    None => Embedding::tensor_with_channels(
                        features,
                        self.prompt_encoder.dim(),
                        original,
                        resized,
                    ),
                }
            }
        }
    }

    /// The image embedding as the mask decoder reads it, (1, C, 64, 64) on the model's
    /// device: SAM 2 adds `no_mem_embed` to the encoder's features of a single image (its
    /// [`Embedding`] keeps them without, for the video tracker's memory attention).
    fn decoder_image(&self, embedding: &Embedding) -> Result<Tensor> {
        let features = embedding.tensor_on(&self.device)?;
        match &self.engine {
            Engine::Candle {
                encoder: CandleEncoder::Hiera(encoder),
                ..
            } if embedding.high_res().is_some() => encoder.with_no_memory(&features),
            _ => Ok(features),
        }
    }

    /// [`Sam::decoder_image`] on the host, row-major (channel, row, column): what
    /// `SAM2ImagePredictor` keeps as `_features["image_embed"]`, and for SAM and MobileSAM
    /// the embedding itself.
    pub fn decoder_image_embedding(&self, embedding: &Embedding) -> Result<Vec<f32>> {
        host_values(&self.decoder_image(embedding)?)
    }

    /// Bytes of activation buffers the fused encoder keeps between calls (about 200 MB
    /// after the first image; 0 with candle).
    pub fn encoder_buffer_bytes(&self) -> usize {
        match &self.engine {
            Engine::Fused { encoder, .. } => encoder.buffers().bytes(),
            Engine::Candle { .. } => 0,
        }
    }

    /// Frees the activation buffers the fused encoder keeps between calls (the next image
    /// allocates them again): for a process that goes idle.
    pub fn release_encoder_buffers(&self) {
        if let Engine::Fused { encoder, .. } = &self.engine {
            encoder.buffers().clear();
        }
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
        let batch_of = |members: &[usize]| -> Vec<&ScaledPrompt> {
            members.iter().map(|&i| &scaled[i]).collect()
        };
        // The embedding in the form the decoder reads is made once per call, not per batch.
        let mut decoded = Vec::with_capacity(objects.len());
        match &self.engine {
            Engine::Candle {
                decoder,
                fused_decoder: None,
                ..
            } => {
                let image = self.decoder_image(embedding)?;
                for members in decoder_batches(objects) {
                    let batch = batch_of(&members);
                    let masks = self.decode_candle(
                        decoder,
                        &image,
                        embedding.high_res(),
                        &batch,
                        multimask,
                    )?;
                    decoded.extend(members.into_iter().zip(masks));
                }
            }
            Engine::Fused {
                decoder: FusedDecoder {
                    decoder, no_mask, ..
                },
                ..
            }
            | Engine::Candle {
                fused_decoder: Some(FusedDecoder { decoder, no_mask }),
                ..
            } => {
                let (image, high_res) = self.fused_decoder_inputs(embedding)?;
                let high_res = high_res
                    .as_ref()
                    .map(|[s0, s1]| fused::mask_decoder::HighRes { s0, s1 });
                let extent = cropped.then(|| low_res_extent(embedding.input_size));
                for members in decoder_batches(objects) {
                    // The fused decoder takes one object at a time.
                    for (index, prompt) in members.iter().zip(batch_of(&members)) {
                        let masks = self.decode_fused(
                            decoder,
                            (&image, high_res.as_ref()),
                            no_mask,
                            prompt,
                            multimask,
                            extent,
                        )?;
                        decoded.push((*index, masks));
                    }
                }
            }
        }
        for (index, object) in decoded {
            results[index] = Some(object);
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| ModelError::Shape("an object was not decoded".into())))
            .collect()
    }

    /// The embedding as the fused decoder reads it, channels-last: the image embedding (SAM
    /// 2: with `no_mem_embed`) and SAM 2's two high-resolution levels.
    #[allow(clippy::type_complexity)]
    fn fused_decoder_inputs(
        &self,
        embedding: &Embedding,
    ) -> Result<(std::sync::Arc<Vec<f32>>, Option<[Vec<f32>; 2]>)> {
        let Some(high_res) = embedding.high_res() else {
            return Ok((embedding.host_channels_last()?, None));
        };
        let channels = embedding.channels();
        let image = to_channels_last(&self.decoder_image_embedding(embedding)?, channels);
        let s0 = to_channels_last(&host_values(&high_res.s0)?, channels / 8);
        let s1 = to_channels_last(&host_values(&high_res.s1)?, channels / 4);
        Ok((std::sync::Arc::new(image), Some([s0, s1])))
    }

    /// One object through the fused decoder.
    fn decode_fused(
        &self,
        decoder: &fused::MaskDecoder,
        (image, high_res): (&[f32], Option<&fused::mask_decoder::HighRes>),
        no_mask: &[f32],
        prompt: &ScaledPrompt,
        multimask: bool,
        extent: Option<(usize, usize)>,
    ) -> Result<RawObjectMasks> {
        let sparse = host_values(&self.prompt_encoder.sparse_embeddings(&[prompt])?)?;
        let dense_values;
        let dense = if prompt.mask_input.is_some() {
            dense_values = host_values(&self.prompt_encoder.dense_embeddings(&[prompt])?)?;
            Dense::Planar(&dense_values)
        } else {
            Dense::NoMask(no_mask)
        };
        let out = decoder.forward(image, &sparse, dense, high_res, multimask, extent)?;
        Ok(RawObjectMasks {
            low_res_logits: out.masks,
            scores: out.scores,
            object_score_logit: out.object_score,
        })
    }

    /// A batch of objects of one prompt shape through the candle decoder.
    fn decode_candle(
        &self,
        decoder: &candle::MaskDecoder,
        image: &Tensor,
        high_res: Option<&HighResFeatures>,
        batch: &[&ScaledPrompt],
        multimask: bool,
    ) -> Result<Vec<RawObjectMasks>> {
        let sparse = self.prompt_encoder.sparse_embeddings(batch)?;
        let dense = self.prompt_encoder.dense_embeddings(batch)?;
        let out = decoder.forward(
            image,
            self.prompt_encoder.dense_pe(),
            &sparse,
            &dense,
            high_res,
            multimask,
        )?;
        let per_object = out
            .low_res_masks
            .to_dtype(DType::F32)?
            .flatten_from(2)?
            .to_vec3::<f32>()?;
        let scores = out.iou_predictions.to_vec2::<f32>()?;
        let object_scores: Vec<Option<f32>> = match &out.object_score_logits {
            Some(t) => t
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; scores.len()],
        };
        Ok(per_object
            .into_iter()
            .zip(scores)
            .zip(object_scores)
            .map(
                |((low_res_logits, scores), object_score_logit)| RawObjectMasks {
                    low_res_logits,
                    scores,
                    object_score_logit,
                },
            )
            .collect())
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
                            out.low_res_logits = Some(returned_logits(logits, embedding));
                        }
                        Ok(out)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(ObjectMasks { masks })
            })
            .collect()
    }
}

/// SAM 2 returns its low-resolution logits clamped to +-32 (`SAM2ImagePredictor.predict`;
/// the masks come from the unclamped ones); SAM returns them as they are.
const SAM2_LOGIT_CLAMP: f32 = 32.0;

fn returned_logits(mut logits: Vec<f32>, embedding: &Embedding) -> Vec<f32> {
    if embedding.high_res().is_some() {
        for l in &mut logits {
            *l = l.clamp(-SAM2_LOGIT_CLAMP, SAM2_LOGIT_CLAMP);
        }
    }
    logits
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
        if embedding.high_res().is_some() {
            // SAM 2: no padding; straight to the original size.
            upscale_stretched_to_scored_mask(logits, embedding.original_size)
        } else {
            upscale_to_scored_mask(logits, embedding.input_size, embedding.original_size)
        }
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

/// Objects decoded together: indices of the objects with the same prompt shape (point
/// count, box, mask input), in order of first appearance. The candle decoder runs each
/// group as one batch; the fused decoder runs its objects one by one.
fn decoder_batches(objects: &[ObjectPrompt]) -> Vec<Vec<usize>> {
    let mut groups: Vec<((usize, bool, bool), Vec<usize>)> = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let key = object.batch_key();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// A stage output of the candle encoder as channels-last values and (height, width,
/// channels): "patch_embed" is NCHW, the stages are tokens (1, L, C) on a square grid.
fn channels_last(t: &Tensor) -> Result<(Vec<f32>, (usize, usize, usize))> {
    match t.dims() {
        &[1, c, h, w] => Ok((
            host_values(&t.permute((0, 2, 3, 1))?.contiguous()?)?,
            (h, w, c),
        )),
        &[1, l, c] => {
            let side = (l as f64).sqrt() as usize;
            Ok((host_values(t)?, (side, l / side.max(1), c)))
        }
        other => Err(ModelError::Shape(format!("encoder stage output {other:?}"))),
    }
}

/// Maps a prompt from original-image pixels to model-input pixels: SAM's
/// [`scale_coords`], or for SAM 2 `SAM2Transforms.transform_coords` (`x / w * 1024` in
/// float32).
fn scale_prompt(object: &ObjectPrompt, embedding: &Embedding) -> ScaledPrompt {
    let stretched = embedding.high_res().is_some();
    let (h, w) = embedding.original_size;
    let side = IMAGE_SIZE as f32;
    let scale = |x: f32, y: f32| {
        if stretched {
            (x / w as f32 * side, y / h as f32 * side)
        } else {
            scale_coords(x, y, embedding.original_size, embedding.input_size)
        }
    };
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
