//! [`Embedding`]: an encoded image, in the form its backend decodes from; for SAM 2 with
//! its two high-resolution feature maps ([`HighResFeatures`]). [`HostEmbedding`] is the
//! same on the host, for keeping it outside the process.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::architecture::{EMBED_CHANNELS, EMBED_SIDE};
use crate::error::Result;
use mobilesam_checkpoint::CheckpointError;
use mobilesam_kernels::layout::{to_channels_last, to_planar};

/// The (256, 64, 64) features of an image.
#[derive(Debug, Clone)]
enum Features {
    /// Channels-last on the host (`64 * 64` rows of 256 values): what the fused encoder
    /// writes and the fused decoder reads.
    ChannelsLast(Arc<Vec<f32>>),
    /// A (1, 256, 64, 64) candle tensor on the model's device.
    Tensor(Tensor),
}

/// SAM 2's high-resolution features, after the decoder's `conv_s0` / `conv_s1`:
/// (1, C/8, 256, 256) and (1, C/4, 128, 128), C the embedding's channels.
#[derive(Debug, Clone)]
pub struct HighResFeatures {
    /// The 256x256 level.
    pub s0: Tensor,
    /// The 128x128 level.
    pub s1: Tensor,
}

/// Sides of SAM 2's two high-resolution levels.
pub const HIGH_RES_SIDES: [usize; 2] = [256, 128];

/// An embedding on the host: what [`Embedding::to_host`] gives and [`Embedding::from_host`]
/// takes back.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEmbedding {
    /// Channels C of the image embedding.
    pub channels: usize,
    /// C x 64 x 64 values, row-major (channel, row, column).
    pub values: Vec<f32>,
    /// SAM 2: the C/8 x 256 x 256 and C/4 x 128 x 128 levels, row-major.
    pub high_res: Option<[Vec<f32>; 2]>,
    /// (height, width) of the original image.
    pub original_size: (usize, usize),
    /// (height, width) of the resized image inside the 1024x1024 input.
    pub input_size: (usize, usize),
}

impl HostEmbedding {
    /// Values expected for `channels`: image, then the two high-resolution levels.
    pub fn expected_lengths(channels: usize) -> [usize; 3] {
        [
            channels * EMBED_SIDE * EMBED_SIDE,
            channels / 8 * HIGH_RES_SIDES[0] * HIGH_RES_SIDES[0],
            channels / 4 * HIGH_RES_SIDES[1] * HIGH_RES_SIDES[1],
        ]
    }
}

/// An encoded image: the C x 64 x 64 embedding (C = 256 in the official models), SAM 2's
/// high-resolution features, and the sizes needed to map prompts in and masks out.
#[derive(Debug, Clone)]
pub struct Embedding {
    features: Features,
    /// SAM 2 only. Its presence also means SAM 2's framing: the image stretched over the
    /// whole 1024x1024 input, masks upscaled straight to the original size.
    high_res: Option<HighResFeatures>,
    /// Channels of the features: 256 for MobileSAM and the official SAM models, the prompt
    /// width of the checkpoint otherwise.
    channels: usize,
    /// (height, width) of the original image.
    pub original_size: (usize, usize),
    /// (height, width) of the resized image inside the 1024x1024 input.
    pub input_size: (usize, usize),
}

impl Embedding {
    /// Number of values in the features (256 * 64 * 64).
    pub const VALUES: usize = EMBED_CHANNELS * EMBED_SIDE * EMBED_SIDE;

    /// The shape of [`Embedding::to_host_f32`]'s values, as `.npy` files and the reference
    /// hold them (batch of one).
    pub const SHAPE: [usize; 4] = [1, EMBED_CHANNELS, EMBED_SIDE, EMBED_SIDE];

    /// An embedding from the fused encoder's channels-last values.
    pub(crate) fn channels_last(
        values: Vec<f32>,
        original_size: (usize, usize),
        input_size: (usize, usize),
    ) -> Result<Self> {
        check_len(values.len())?;
        Ok(Self {
            features: Features::ChannelsLast(Arc::new(values)),
            high_res: None,
            channels: EMBED_CHANNELS,
            original_size,
            input_size,
        })
    }

    /// An embedding from a (1, 256, 64, 64) tensor.
    pub(crate) fn tensor(
        features: Tensor,
        original_size: (usize, usize),
        input_size: (usize, usize),
    ) -> Result<Self> {
        Self::tensor_with_channels(features, EMBED_CHANNELS, original_size, input_size)
    }

    /// An embedding from a (1, `channels`, 64, 64) tensor (a checkpoint whose prompt width
    /// is not 256).
    pub(crate) fn tensor_with_channels(
        features: Tensor,
        channels: usize,
        original_size: (usize, usize),
        input_size: (usize, usize),
    ) -> Result<Self> {
        let shape = [1, channels, EMBED_SIDE, EMBED_SIDE];
        if features.dims() != shape {
            return Err(CheckpointError::ShapeMismatch {
                name: "embedding".into(),
                expected: shape.to_vec(),
                found: features.dims().to_vec(),
            }
            .into());
        }
        Ok(Self {
            features: Features::Tensor(features),
            high_res: None,
            channels,
            original_size,
            input_size,
        })
    }

    /// A SAM 2 embedding: `features` (1, C, 64, 64) and its high-resolution levels.
    pub(crate) fn with_high_res(
        features: Tensor,
        high_res: HighResFeatures,
        original_size: (usize, usize),
    ) -> Result<Self> {
        let channels = features.dim(1)?;
        let expected = [
            [1, channels / 8, HIGH_RES_SIDES[0], HIGH_RES_SIDES[0]],
            [1, channels / 4, HIGH_RES_SIDES[1], HIGH_RES_SIDES[1]],
        ];
        for (level, (t, shape)) in [&high_res.s0, &high_res.s1]
            .iter()
            .zip(expected)
            .enumerate()
        {
            if t.dims() != shape {
                return Err(CheckpointError::ShapeMismatch {
                    name: format!("high-resolution features s{level}"),
                    expected: shape.to_vec(),
                    found: t.dims().to_vec(),
                }
                .into());
            }
        }
        let mut embedding = Self::tensor_with_channels(
            features,
            channels,
            original_size,
            (crate::image::IMAGE_SIZE, crate::image::IMAGE_SIZE),
        )?;
        embedding.high_res = Some(high_res);
        Ok(embedding)
    }

    /// SAM 2's high-resolution features; `None` for MobileSAM and SAM ViT.
    pub fn high_res(&self) -> Option<&HighResFeatures> {
        self.high_res.as_ref()
    }

    /// Everything on the host, for keeping the embedding outside the process.
    pub fn to_host(&self) -> Result<HostEmbedding> {
        let high_res = match &self.high_res {
            None => None,
            Some(h) => Some([
                h.s0.flatten_all()?.to_vec1::<f32>()?,
                h.s1.flatten_all()?.to_vec1::<f32>()?,
            ]),
        };
        Ok(HostEmbedding {
            channels: self.channels,
            values: self.to_host_f32()?,
            high_res,
            original_size: self.original_size,
            input_size: self.input_size,
        })
    }

    /// An embedding rebuilt from [`Embedding::to_host`]'s values, for a model on `device`;
    /// an error when the lengths do not fit the channels. A 256-channel embedding without
    /// high-resolution levels takes the form of [`Embedding::from_host_f32`].
    pub fn from_host(host: HostEmbedding, device: &Device) -> Result<Self> {
        let c = host.channels;
        let [image_len, s0_len, s1_len] = HostEmbedding::expected_lengths(c);
        let mismatch = |name: &str, expected: usize, found: usize| {
            Err(CheckpointError::ShapeMismatch {
                name: name.into(),
                expected: vec![expected],
                found: vec![found],
            }
            .into())
        };
        if c == 0 || !c.is_multiple_of(8) || host.values.len() != image_len {
            return mismatch("embedding", image_len, host.values.len());
        }
        let features = Tensor::from_vec(host.values, (1, c, EMBED_SIDE, EMBED_SIDE), device)?;
        match host.high_res {
            None if c == EMBED_CHANNELS => Self::from_host_f32(
                features.flatten_all()?.to_vec1::<f32>()?,
                host.original_size,
                host.input_size,
                device,
            ),
            None => Self::tensor_with_channels(features, c, host.original_size, host.input_size),
            Some([s0, s1]) => {
                if s0.len() != s0_len {
                    return mismatch("high-resolution features s0", s0_len, s0.len());
                }
                if s1.len() != s1_len {
                    return mismatch("high-resolution features s1", s1_len, s1.len());
                }
                let [side0, side1] = HIGH_RES_SIDES;
                let high_res = HighResFeatures {
                    s0: Tensor::from_vec(s0, (1, c / 8, side0, side0), device)?,
                    s1: Tensor::from_vec(s1, (1, c / 4, side1, side1), device)?,
                };
                Self::with_high_res(features, high_res, host.original_size)
            }
        }
    }

    /// Channels of the features (256 but for reduced test models).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Bytes held by the features, SAM 2's high-resolution levels included.
    pub fn size_bytes(&self) -> usize {
        let [image, s0, s1] = HostEmbedding::expected_lengths(self.channels);
        let values = if self.high_res.is_some() {
            image + s0 + s1
        } else {
            image
        };
        values * std::mem::size_of::<f32>()
    }

    /// The features copied to the host, row-major (channel, row, column).
    pub fn to_host_f32(&self) -> Result<Vec<f32>> {
        match &self.features {
            Features::ChannelsLast(values) => Ok(to_planar(values, self.channels)),
            Features::Tensor(t) => Ok(t.flatten_all()?.to_vec1::<f32>()?),
        }
    }

    /// An embedding rebuilt from [`Self::to_host_f32`]'s values (an embedding kept outside
    /// the process), in the form a model on `device` decodes from by default: channels-last
    /// on the host for the CPU, a tensor on other devices. `values` must hold exactly
    /// [`Self::VALUES`] numbers.
    pub fn from_host_f32(
        values: Vec<f32>,
        original_size: (usize, usize),
        input_size: (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        check_len(values.len())?;
        if device.is_cpu() {
            let tokens = to_channels_last(&values, EMBED_CHANNELS);
            return Self::channels_last(tokens, original_size, input_size);
        }
        let features = Tensor::from_vec(values, Self::SHAPE.as_slice(), device)?;
        Self::tensor(features, original_size, input_size)
    }

    /// The features channels-last on the host, for the fused decoder: borrowed when they
    /// are already in that form, converted otherwise.
    pub(crate) fn host_channels_last(&self) -> Result<Arc<Vec<f32>>> {
        match &self.features {
            Features::ChannelsLast(values) => Ok(Arc::clone(values)),
            Features::Tensor(t) => {
                let planar = t.flatten_all()?.to_vec1::<f32>()?;
                Ok(Arc::new(to_channels_last(&planar, self.channels)))
            }
        }
    }

    /// The features as a (1, 256, 64, 64) tensor on `device`, for the candle decoder:
    /// shared when they are already one there, converted otherwise.
    pub(crate) fn tensor_on(&self, device: &Device) -> Result<Tensor> {
        match &self.features {
            Features::Tensor(t) => Ok(t.to_device(device)?),
            Features::ChannelsLast(_) => {
                let planar = self.to_host_f32()?;
                let shape = (1, self.channels, EMBED_SIDE, EMBED_SIDE);
                Ok(Tensor::from_vec(planar, shape, device)?)
            }
        }
    }
}

fn check_len(len: usize) -> Result<()> {
    if len == Embedding::VALUES {
        return Ok(());
    }
    Err(CheckpointError::ShapeMismatch {
        name: "embedding".into(),
        expected: Embedding::SHAPE.to_vec(),
        found: vec![len],
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ModelError;

    #[test]
    fn host_values_survive_both_forms() -> Result<()> {
        let values: Vec<f32> = (0..Embedding::VALUES).map(|i| i as f32).collect();
        let device = Device::Cpu;
        let e = Embedding::from_host_f32(values.clone(), (10, 20), (512, 1024), &device)?;
        assert_eq!(e.to_host_f32()?, values);
        let tensor = e.tensor_on(&device)?;
        let t = Embedding::tensor(tensor, (10, 20), (512, 1024))?;
        assert_eq!(t.to_host_f32()?, values);
        assert_eq!(t.host_channels_last()?, e.host_channels_last()?);
        // Channels-last: the second value is channel 1 of pixel 0, planar index 64 * 64.
        assert_eq!(e.host_channels_last()?[1], 4096.0);
        Ok(())
    }

    #[test]
    fn sam2_embeddings_survive_the_host() -> Result<()> {
        let c = 16;
        let [n, n0, n1] = HostEmbedding::expected_lengths(c);
        let ramp = |n: usize, k: f32| (0..n).map(|i| i as f32 * k).collect::<Vec<f32>>();
        let host = HostEmbedding {
            channels: c,
            values: ramp(n, 1.0),
            high_res: Some([ramp(n0, 2.0), ramp(n1, 3.0)]),
            original_size: (30, 40),
            input_size: (1024, 1024),
        };
        let e = Embedding::from_host(host.clone(), &Device::Cpu)?;
        assert!(e.high_res().is_some());
        assert_eq!(e.size_bytes(), (n + n0 + n1) * 4);
        assert_eq!(e.to_host()?, host);
        let mut short = host;
        if let Some(levels) = short.high_res.as_mut() {
            levels[1].pop();
        }
        assert!(Embedding::from_host(short, &Device::Cpu).is_err());
        Ok(())
    }

    #[test]
    fn a_wrong_length_is_refused() {
        let err = Embedding::from_host_f32(vec![0.0; 7], (1, 1), (1, 1), &Device::Cpu);
        assert!(matches!(
            err,
            Err(ModelError::Checkpoint(
                CheckpointError::ShapeMismatch { .. }
            ))
        ));
    }
}
