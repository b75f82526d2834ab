//! Naming a device: `cpu`, `cuda[:N]` or `metal[:N]` (the `--device` flag of every command).

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{ModelError, Result};

/// A device named on the command line; opened with [`DeviceSpec::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The host CPU.
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
    /// An Apple GPU by ordinal (needs the `metal` feature).
    Metal(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((kind, n)) => {
                let n = n
                    .parse::<usize>()
                    .map_err(|_| format!("device ordinal `{n}` is not a number"))?;
                (kind, Some(n))
            }
            None => (s, None),
        };
        match (kind.to_ascii_lowercase().as_str(), ordinal) {
            ("cpu", None) => Ok(Self::Cpu),
            ("cuda", n) => Ok(Self::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(Self::Metal(n.unwrap_or(0))),
            _ => Err(format!(
                "unknown device `{s}`; expected cpu, cuda, cuda:N, metal or metal:N"
            )),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device; a GPU this build was not compiled for gives an error saying which
    /// feature to enable.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(ModelError::Device(format!(
                        "device {self}: this build has no CUDA support (rebuild with --features cuda)"
                    )));
                }
                Device::new_cuda(n)
                    .map_err(|e| ModelError::Device(format!("cannot open device {self}: {e}")))
            }
            Self::Metal(n) => {
                if !cfg!(feature = "metal") {
                    return Err(ModelError::Device(format!(
                        "device {self}: this build has no Metal support (rebuild with --features metal)"
                    )));
                }
                Device::new_metal(n)
                    .map_err(|e| ModelError::Device(format!("cannot open device {self}: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("CUDA:1".parse(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("metal:0".parse(), Ok(DeviceSpec::Metal(0)));
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }
}
