//! The detection network as the checkpoint's `yaml` lays it out: layer `i` takes the
//! outputs its `from` field names (`-1` the previous layer), runs the module pickled at
//! `model.<i>`, and the last layer, `Detect`, reads several feature maps.

use candle_core::Tensor;

use super::blocks::{Block, DetectHead, Loader};
use super::checkpoint::UltralyticsCheckpoint;
use super::postprocess::LevelOutput;

/// One layer and the absolute indices of its inputs.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) block: Block,
    pub(crate) inputs: Vec<usize>,
}

/// The network: the layers before the head, and the head with its levels' strides.
#[derive(Debug, Clone)]
pub struct Graph {
    pub(crate) layers: Vec<Layer>,
    /// Whether each layer's output is read by a later layer other than the next.
    pub(crate) kept: Vec<bool>,
    head: DetectHead,
    pub(crate) head_inputs: Vec<usize>,
    /// Stride (input pixels per cell) of each head level.
    pub strides: Vec<usize>,
}

impl Graph {
    /// Builds the network of a checkpoint: module names must match the yaml's, and the
    /// last layer must be a `Detect` head.
    pub fn build(ckpt: &UltralyticsCheckpoint) -> Result<Self, String> {
        let sequence = ckpt.model.child("model")?;
        if sequence.children.len() != ckpt.layers.len() {
            return Err(format!(
                "the yaml lists {} layers but the model holds {}",
                ckpt.layers.len(),
                sequence.children.len()
            ));
        }
        let loader = Loader {
            tensors: &ckpt.tensors,
        };
        let mut layers: Vec<Layer> = Vec::new();
        // Stride of each layer's output as a fraction (num, den) of input pixels.
        let mut strides: Vec<(usize, usize)> = Vec::new();
        let mut head = None;
        for (i, (spec, (_, node))) in ckpt.layers.iter().zip(&sequence.children).enumerate() {
            let yaml_name = spec.module.rsplit('.').next().unwrap_or(&spec.module);
            if yaml_name != node.class {
                return Err(format!(
                    "layer {i}: the yaml says {} but the model holds {}",
                    spec.module, node.class
                ));
            }
            let inputs = if i == 0 {
                if spec.from != [-1] {
                    return Err("layer 0 must read the image (from -1)".into());
                }
                Vec::new() // the image
            } else {
                spec.from
                    .iter()
                    .map(|&f| {
                        let index = if f < 0 { i as i64 + f } else { f };
                        if index < 0 || index >= i as i64 {
                            Err(format!("layer {i}: input {f} is not an earlier layer"))
                        } else {
                            Ok(index as usize)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?
            };
            if inputs.is_empty() && i != 0 {
                return Err(format!("layer {i} has no input"));
            }
            let block = Block::load(node, i, &loader).map_err(|e| format!("layer {i}: {e}"))?;
            let input_stride = inputs.first().map_or((1, 1), |&j| strides[j]);
            if let Block::Detect(h) = block {
                if i + 1 != ckpt.layers.len() {
                    return Err("the Detect head must be the last layer".into());
                }
                if h.levels() != inputs.len() {
                    return Err(format!(
                        "the Detect head has {} levels but reads {} layers",
                        h.levels(),
                        inputs.len()
                    ));
                }
                head = Some((h, inputs));
                break;
            }
            if matches!(block, Block::Concat) && inputs.iter().any(|&j| strides[j] != input_stride)
            {
                return Err(format!("layer {i}: Concat of maps of different strides"));
            }
            if i != 0 && !matches!(block, Block::Concat) && inputs.len() != 1 {
                return Err(format!("layer {i}: {} takes one input", node.class));
            }
            let (num, den) = block.stride_factor();
            let (sn, sd) = input_stride;
            strides.push(reduce(sn * num, sd * den));
            layers.push(Layer { block, inputs });
        }
        let Some((head, head_inputs)) = head else {
            return Err(
                "the model has no Detect head (only detection models are supported)".into(),
            );
        };
        let level_strides = head_inputs
            .iter()
            .map(|&j| match strides[j] {
                (s, 1) if s >= 1 => Ok(s),
                _ => Err("a head level has a fractional stride".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut kept = vec![false; layers.len()];
        for (i, layer) in layers.iter().enumerate() {
            for &j in &layer.inputs {
                if j + 1 != i {
                    kept[j] = true;
                }
            }
        }
        for &j in &head_inputs {
            kept[j] = true;
        }
        Ok(Self {
            layers,
            kept,
            head,
            head_inputs,
            strides: level_strides,
        })
    }

    /// The largest stride: input sides must be multiples of it.
    pub fn max_stride(&self) -> usize {
        self.strides.iter().copied().max().unwrap_or(32)
    }

    /// The head.
    pub fn head(&self) -> &DetectHead {
        &self.head
    }

    /// Runs the network on `image` (1, 3, H, W) and returns the head's per-level outputs.
    pub fn forward(&self, image: &Tensor) -> candle_core::Result<Vec<LevelOutput>> {
        let mut outputs: Vec<Option<Tensor>> = vec![None; self.layers.len()];
        let mut previous = image.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let y = if layer.inputs.is_empty() {
                layer.block.forward(std::slice::from_ref(&previous))?
            } else {
                let inputs = layer
                    .inputs
                    .iter()
                    .map(|&j| {
                        if j + 1 == i {
                            Ok(previous.clone())
                        } else {
                            outputs[j]
                                .clone()
                                .ok_or_else(|| candle_core::Error::msg("a dropped output"))
                        }
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                layer.block.forward(&inputs)?
            };
            if self.kept[i] {
                outputs[i] = Some(y.clone());
            }
            previous = y;
        }
        let feats = self
            .head_inputs
            .iter()
            .map(|&j| {
                outputs[j]
                    .clone()
                    .ok_or_else(|| candle_core::Error::msg("a dropped head input"))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        self.head.forward_levels(&feats)
    }
}

fn reduce(num: usize, den: usize) -> (usize, usize) {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = gcd(num, den).max(1);
    (num / g, den / g)
}
