//! [`Backend`]: which of the two implementations of MobileSAM a [`crate::Sam`] runs.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{ModelError, Result};

/// The implementation that runs the image encoder and the mask decoder.
///
/// The choice is made once, when the model is built ([`crate::Sam::with_backend`]); the
/// prompt encoder and the postprocessing are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// candle tensor operations ([`crate::candle`]): any device; on the CPU, the plain
    /// reference the fused kernels are checked against.
    Candle,
    /// The hand-written CPU kernels ([`crate::fused`]): the CPU only, and the fastest there.
    Fused,
}

impl Backend {
    /// Every backend, for choices and tests.
    pub const ALL: [Backend; 2] = [Backend::Candle, Backend::Fused];

    /// The default on `device`: fused on the CPU, candle elsewhere.
    pub fn default_for(device: &Device) -> Self {
        if device.is_cpu() {
            Backend::Fused
        } else {
            Backend::Candle
        }
    }

    /// The default on `device` for a checkpoint of `family`: [`Backend::default_for`] (for
    /// SAM ViT and SAM 2.1 the encoder then runs on candle and, at the official widths, the
    /// decoder on the fused kernels: see [`crate::Sam::with_backend`]).
    pub fn default_for_family(device: &Device, _family: &crate::family::Family) -> Self {
        Self::default_for(device)
    }

    /// The user's `choice`, or the default on `device`; an error when it cannot run there.
    pub fn choose(choice: Option<Backend>, device: &Device) -> Result<Self> {
        let backend = choice.unwrap_or_else(|| Backend::default_for(device));
        backend.check_device(device)?;
        Ok(backend)
    }

    /// The backend's name, as `--backend` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Candle => "candle",
            Backend::Fused => "fused",
        }
    }

    /// An error when this backend cannot run on `device`.
    pub fn check_device(self, device: &Device) -> Result<()> {
        if self == Backend::Fused && !device.is_cpu() {
            return Err(ModelError::Device(
                "the fused backend runs on the CPU only; use the candle backend on GPUs".into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                ModelError::InvalidParams(format!(
                    "unknown backend `{s}`: expected `candle` or `fused`"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().ok(), Some(b));
        }
        assert_eq!(" Fused ".parse::<Backend>().ok(), Some(Backend::Fused));
        let err = "onnx"
            .parse::<Backend>()
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("invalid parameters: unknown backend `onnx`: expected `candle` or `fused`".into())
        );
    }

    #[test]
    fn the_cpu_defaults_to_fused() {
        assert_eq!(Backend::default_for(&Device::Cpu), Backend::Fused);
        assert!(Backend::Fused.check_device(&Device::Cpu).is_ok());
        assert!(Backend::Candle.check_device(&Device::Cpu).is_ok());
        assert_eq!(
            Backend::choose(None, &Device::Cpu).ok(),
            Some(Backend::Fused)
        );
        let chosen = Backend::choose(Some(Backend::Candle), &Device::Cpu).ok();
        assert_eq!(chosen, Some(Backend::Candle));
    }
}
