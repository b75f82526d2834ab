//! Reading weights: the official `mobile_sam.pt` (a `torch.save` zip of the state_dict) or a
//! `.safetensors` file with the same tensor names.
//!
//! Every tensor is read into host memory as float32 (int64 counters stay int64) and handed
//! out by name with its shape checked, so a wrong file fails with an error that names the
//! tensor and both shapes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::digest::Sha256Digest;
use crate::error::{CheckpointError, Result};
use crate::torch::read_torch_zip;

/// The state_dict of a SAM checkpoint, tensors on the host.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    tensors: HashMap<String, Tensor>,
    file_bytes: u64,
    sha256: Option<Sha256Digest>,
}

/// Parameter counts per part, as `sum(p.numel() for p in part.parameters())` in PyTorch:
/// BatchNorm running statistics and counters are buffers, not parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParameterCounts {
    /// TinyViT image encoder, its unused classification head included.
    pub image_encoder: u64,
    /// Prompt encoder.
    pub prompt_encoder: u64,
    /// Mask decoder.
    pub mask_decoder: u64,
    /// Everything else: SAM 2's memory attention, memory encoder and object pointers.
    pub other: u64,
    /// All parts together.
    pub total: u64,
}

impl Checkpoint {
    /// Reads a `.pt`/`.pth` (zip) or `.safetensors` checkpoint, recognised by its content.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_verified(path, None)
    }

    /// As [`Checkpoint::load`], but when `expected` is given the file's SHA-256 must equal
    /// it: a mismatch is a [`CheckpointError::Invalid`] naming both digests, before any tensor
    /// is read. The digest is taken of the very bytes that are then parsed.
    pub fn load_verified(path: &Path, expected: Option<&Sha256Digest>) -> Result<Self> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: shown.clone(),
            source,
        })?;
        let sha256 = Sha256Digest::of(&bytes);
        if let Some(expected) = expected {
            expected.expect(&sha256, &shown)?;
        }
        Self::parse(&bytes, &shown, sha256)
    }

    /// Reads a checkpoint already in memory, as [`Checkpoint::load`]; `shown` names it in
    /// errors. Malformed input gives [`CheckpointError::Invalid`], and nothing allocated
    /// while reading is larger than `bytes`: a zip entry or tensor claiming more is refused.
    pub fn from_bytes(bytes: &[u8], shown: &str) -> Result<Self> {
        Self::parse(bytes, shown, Sha256Digest::of(bytes))
    }

    /// [`Checkpoint::from_bytes`] with the digest of `bytes` already taken.
    fn parse(bytes: &[u8], shown: &str, sha256: Sha256Digest) -> Result<Self> {
        let bad = |reason: String| CheckpointError::Invalid {
            path: shown.to_string(),
            reason,
        };
        let tensors = if bytes.starts_with(b"PK\x03\x04") {
            read_torch_zip(bytes).map_err(bad)?
        } else if bytes.len() > 8 {
            candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
                .map_err(|e| bad(format!("neither a torch.save zip nor safetensors ({e})")))?
        } else {
            return Err(bad("file is too short to be a checkpoint".into()));
        };
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| Ok((name, to_host_dtype(t)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self {
            tensors,
            file_bytes: bytes.len() as u64,
            sha256: Some(sha256),
        })
    }

    /// Wraps tensors already in memory (tests, generated weights).
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Self {
        Self {
            tensors,
            file_bytes: 0,
            sha256: None,
        }
    }

    /// Size of the file it was read from (0 when built in memory).
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// SHA-256 of the file it was read from (`None` when built in memory).
    pub fn sha256(&self) -> Option<&Sha256Digest> {
        self.sha256.as_ref()
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The shape of tensor `name`, when the checkpoint has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(Tensor::dims)
    }

    /// The tensor `name` as float32, checked against `expected` shape.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| CheckpointError::MissingTensor {
                name: name.to_string(),
                expected: expected.to_vec(),
            })?;
        if tensor.dims() != expected {
            return Err(CheckpointError::ShapeMismatch {
                name: name.to_string(),
                expected: expected.to_vec(),
                found: tensor.dims().to_vec(),
            });
        }
        Ok(tensor.to_dtype(DType::F32)?)
    }

    /// Writes every tensor to a `.safetensors` file (e.g. generated test weights for a
    /// server process).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors, path).map_err(|e| CheckpointError::Invalid {
            path: path.display().to_string(),
            reason: format!("cannot write: {e}"),
        })
    }

    /// Parameter counts per part (buffers excluded), as PyTorch's `parameters()` counts them.
    pub fn parameter_counts(&self) -> ParameterCounts {
        let mut counts = ParameterCounts::default();
        for (name, tensor) in &self.tensors {
            if is_buffer(name) {
                continue;
            }
            let n = tensor.elem_count() as u64;
            if name.starts_with("image_encoder.") {
                counts.image_encoder += n;
            } else if name.starts_with("prompt_encoder.") || name.starts_with("sam_prompt_encoder.")
            {
                counts.prompt_encoder += n;
            } else if name.starts_with("mask_decoder.") || name.starts_with("sam_mask_decoder.") {
                counts.mask_decoder += n;
            } else {
                counts.other += n;
            }
        }
        counts.total =
            counts.image_encoder + counts.prompt_encoder + counts.mask_decoder + counts.other;
        counts
    }
}

/// BatchNorm statistics and counters, cached index tables and the fixed random Fourier
/// matrix: registered buffers in the reference, not parameters.
fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".positional_encoding_gaussian_matrix")
        || name.ends_with(".running_var")
        || name.ends_with(".num_batches_tracked")
        || name.ends_with(".attention_bias_idxs")
}

/// Floating tensors become float32; integer tensors keep their type.
fn to_host_dtype(t: Tensor) -> Result<Tensor> {
    Ok(match t.dtype() {
        DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
        _ => t,
    })
}
