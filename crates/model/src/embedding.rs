//! [`Embedding`]: an encoded image, in the form its backend decodes from.

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

/// An encoded image: the 256 x 64 x 64 embedding and the sizes needed to map prompts in
/// and masks out.
#[derive(Debug, Clone)]
pub struct Embedding {
    features: Features,
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
            channels,
            original_size,
            input_size,
        })
    }

    /// Channels of the features (256 but for reduced test models).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Bytes held by the features.
    pub fn size_bytes(&self) -> usize {
        self.channels * EMBED_SIDE * EMBED_SIDE * std::mem::size_of::<f32>()
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
