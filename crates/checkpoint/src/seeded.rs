//! Seeded random weights in the official checkpoint's layout, for tests and benchmarks.
//!
//! Real weights cannot be downloaded everywhere; the parity fixtures were produced by the
//! reference implementation with weights from this generator, so both sides rebuild the
//! same tensors bit for bit from a seed and a manifest (name, shape, dtype, centre and
//! half-width of a uniform distribution per tensor; see `tests/fixtures/make_fixtures.py`).
//!
//! Element `i` of tensor `name`: `r = splitmix64(fnv1a64(name) ^ splitmix64(seed) + i)`,
//! `u = (r >> 11) * 2^-53`, `value = f32(centre + half_width * (2u - 1))` in f64.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::checkpoint::Checkpoint;
use crate::error::{CheckpointError, Result};

/// One tensor of the manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct TensorSpec {
    /// state_dict name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// `float32` or `int64` (int64 tensors are zeros).
    pub dtype: String,
    /// Centre of the uniform distribution.
    pub center: f64,
    /// Half-width of the uniform distribution.
    pub halfwidth: f64,
}

/// A weights manifest: the seed and every tensor's spec.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Generator seed.
    pub seed: u64,
    /// Tensors in state_dict order.
    pub tensors: Vec<TensorSpec>,
}

impl Manifest {
    /// Parses a manifest JSON document.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| CheckpointError::Invalid {
            path: "manifest".into(),
            reason: e.to_string(),
        })
    }

    /// Generates every tensor of the manifest on the host.
    pub fn generate(&self) -> Result<Checkpoint> {
        let mut tensors = HashMap::with_capacity(self.tensors.len());
        for spec in &self.tensors {
            let numel: usize = spec.shape.iter().product();
            let tensor = match spec.dtype.as_str() {
                "int64" => Tensor::zeros(spec.shape.as_slice(), DType::I64, &Device::Cpu)?,
                "float32" => {
                    let values =
                        uniform_values(self.seed, &spec.name, numel, spec.center, spec.halfwidth);
                    Tensor::from_vec(values, spec.shape.as_slice(), &Device::Cpu)?
                }
                other => {
                    return Err(CheckpointError::Invalid {
                        path: "manifest".into(),
                        reason: format!("tensor `{}` has unsupported dtype {other}", spec.name),
                    })
                }
            };
            tensors.insert(spec.name.clone(), tensor);
        }
        Ok(Checkpoint::from_tensors(tensors))
    }
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's output function.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `count` values uniform in `[center - halfwidth, center + halfwidth)` for tensor `name`.
pub fn uniform_values(
    seed: u64,
    name: &str,
    count: usize,
    center: f64,
    halfwidth: f64,
) -> Vec<f32> {
    let key = fnv1a64(name.as_bytes()) ^ splitmix64(seed);
    (0..count as u64)
        .map(|i| {
            let u = (splitmix64(key.wrapping_add(i)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            (center + halfwidth * (2.0 * u - 1.0)) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_in_range() {
        let a = uniform_values(0, "x.weight", 1000, 1.0, 0.25);
        let b = uniform_values(0, "x.weight", 1000, 1.0, 0.25);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.75..1.25).contains(v)));
        let c = uniform_values(1, "x.weight", 1000, 1.0, 0.25);
        assert_ne!(a, c);
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / 1000.0;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
    }

    /// The fixture script recorded values computed with Python integers; the Rust generator
    /// must reproduce them bit for bit.
    #[test]
    fn matches_the_reference_generator_spot_checks() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/weights_manifest.json"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("json");
        let manifest = Manifest::from_json(&doc.to_string()).expect("manifest parses");
        let checks = doc["spot_checks"].as_array().expect("spot checks");
        assert!(checks.len() >= 10);
        for check in checks {
            let name = check["name"].as_str().expect("name");
            let index = check["index"].as_u64().expect("index") as usize;
            let spec = manifest
                .tensors
                .iter()
                .find(|t| t.name == name)
                .expect("tensor");
            let values =
                uniform_values(manifest.seed, name, index + 1, spec.center, spec.halfwidth);
            assert_eq!(
                values[index],
                check["value"].as_f64().expect("value") as f32,
                "{name}[{index}]"
            );
        }
    }

    #[test]
    fn known_hash_values() {
        // FNV-1a test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        // SplitMix64 with state 0: first output.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    }
}
