//! The building blocks of YOLOv8 and YOLO11 detection models, each loaded from its pickled
//! module (hyperparameters from the module's own attributes, weights by state_dict name)
//! and run on candle in float32, NCHW.
//!
//! Every convolution is loaded with its BatchNorm folded in, as Ultralytics' `fuse()` does
//! before predicting, so a checkpoint saved fused or unfused runs the same.

use std::collections::HashMap;

use candle_core::{Module, Tensor};

use super::checkpoint::ModuleNode;
use super::postprocess::LevelOutput;
use mobilesam_model::candle::depthwise::conv2d_depthwise_shifted;

/// Tensors by dotted name, and the error type of loading.
pub(crate) struct Loader<'a> {
    pub tensors: &'a HashMap<String, Tensor>,
}

type LoadResult<T> = Result<T, String>;

impl Loader<'_> {
    fn tensor(&self, name: &str) -> LoadResult<Tensor> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| format!("the checkpoint has no tensor `{name}`"))
    }
}

/// A convolution with its bias (BatchNorm folded) and activation.
#[derive(Debug, Clone)]
pub struct ConvUnit {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
    pub(crate) groups: usize,
    pub(crate) silu: bool,
}

impl ConvUnit {
    /// Ultralytics' `Conv` / `DWConv` (`conv`, `bn` unless fused, `act`) at `prefix`.
    pub(crate) fn load_conv(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        if !matches!(node.class.as_str(), "Conv" | "DWConv") {
            return Err(format!("{prefix}: expected a Conv, found {}", node.class));
        }
        let conv = node.child("conv")?;
        let mut unit = Self::load_conv2d(conv, &format!("{prefix}.conv"), l)?;
        if let Some(bn) = node.maybe_child("bn") {
            unit.fold_batch_norm(bn, &format!("{prefix}.bn"), l)?;
        }
        unit.silu = match node.maybe_child("act").map(|a| a.class.as_str()) {
            Some("SiLU") => true,
            Some("Identity") | None => false,
            Some(other) => return Err(format!("{prefix}: unsupported activation {other}")),
        };
        Ok(unit)
    }

    /// A plain `nn.Conv2d` at `prefix`: weight, optional bias, stride, padding, groups.
    pub(crate) fn load_conv2d(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        if node.class != "Conv2d" {
            return Err(format!("{prefix}: expected a Conv2d, found {}", node.class));
        }
        let weight = l.tensor(&format!("{prefix}.weight"))?;
        let (out_ch, _, kh, kw) = weight
            .dims4()
            .map_err(|e| format!("{prefix}.weight: {e}"))?;
        let square = |name: &str, default: i64| -> LoadResult<usize> {
            let values = node.ints(name).unwrap_or_else(|| vec![default]);
            match values.as_slice() {
                [a] | [a, _] if values.iter().all(|v| v == a) && *a >= 0 => Ok(*a as usize),
                _ => Err(format!("{prefix}: unsupported {name} {values:?}")),
            }
        };
        let stride = square("stride", 1)?;
        let padding = square("padding", 0)?;
        let dilation = square("dilation", 1)?;
        let groups = node.int("groups").unwrap_or(1);
        if kh != kw || dilation != 1 || stride == 0 || groups < 1 || out_ch % groups as usize != 0 {
            return Err(format!(
                "{prefix}: unsupported convolution (kernel {kh}x{kw}, stride {stride}, dilation {dilation}, groups {groups})"
            ));
        }
        if node.str("padding_mode").is_some_and(|m| m != "zeros") {
            return Err(format!("{prefix}: only zero padding is supported"));
        }
        let bias = match l.tensors.get(&format!("{prefix}.bias")) {
            Some(b) => b.clone(),
            None => Tensor::zeros(out_ch, candle_core::DType::F32, weight.device())
                .map_err(|e| e.to_string())?,
        };
        if bias.dims() != [out_ch] {
            return Err(format!(
                "{prefix}.bias: shape {:?}, expected [{out_ch}]",
                bias.dims()
            ));
        }
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
            groups: groups as usize,
            silu: false,
        })
    }

    /// Folds an eval-mode BatchNorm into the weight and bias, as `fuse_conv_and_bn`.
    fn fold_batch_norm(&mut self, bn: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<()> {
        if bn.class != "BatchNorm2d" {
            return Err(format!(
                "{prefix}: expected a BatchNorm2d, found {}",
                bn.class
            ));
        }
        let eps = bn.float("eps").unwrap_or(1e-5);
        let get = |n: &str| l.tensor(&format!("{prefix}.{n}"));
        let fold = || -> candle_core::Result<(Tensor, Tensor)> {
            let out_ch = self.weight.dim(0)?;
            let gamma = get("weight").map_err(candle_core::Error::msg)?;
            let beta = get("bias").map_err(candle_core::Error::msg)?;
            let mean = get("running_mean").map_err(candle_core::Error::msg)?;
            let var = get("running_var").map_err(candle_core::Error::msg)?;
            let scale = (gamma / (var + eps)?.sqrt()?)?;
            let weight = self
                .weight
                .broadcast_mul(&scale.reshape((out_ch, 1, 1, 1))?)?;
            let bias = ((&self.bias * &scale)? + (beta - (mean * &scale)?)?)?;
            Ok((weight, bias))
        };
        let (weight, bias) = fold().map_err(|e| format!("{prefix}: {e}"))?;
        self.weight = weight;
        self.bias = bias;
        Ok(())
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Stride.
    pub fn stride(&self) -> usize {
        self.stride
    }
}

impl Module for ConvUnit {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out_ch = self.out_channels();
        let depthwise = self.groups > 1 && self.groups == out_ch && self.weight.dim(1)? == 1;
        let y = if depthwise {
            conv2d_depthwise_shifted(x, &self.weight, self.stride, self.padding)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, self.groups)?
        };
        let y = y.broadcast_add(&self.bias.reshape((1, out_ch, 1, 1))?)?;
        if self.silu {
            y.silu()
        } else {
            Ok(y)
        }
    }
}

/// `Bottleneck`: two convolutions, with a residual when `add`.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    pub(crate) cv1: ConvUnit,
    pub(crate) cv2: ConvUnit,
    pub(crate) add: bool,
}

impl Bottleneck {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        Ok(Self {
            cv1: ConvUnit::load_conv(node.child("cv1")?, &format!("{prefix}.cv1"), l)?,
            cv2: ConvUnit::load_conv(node.child("cv2")?, &format!("{prefix}.cv2"), l)?,
            add: node.bool("add").unwrap_or(false),
        })
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.cv2.forward(&self.cv1.forward(x)?)?;
        if self.add {
            x + y
        } else {
            Ok(y)
        }
    }
}

/// `C3` / `C3k`: two branches, one through bottlenecks, joined by `cv3`.
#[derive(Debug, Clone)]
pub struct C3 {
    pub(crate) cv1: ConvUnit,
    pub(crate) cv2: ConvUnit,
    pub(crate) cv3: ConvUnit,
    pub(crate) m: Vec<Bottleneck>,
}

impl C3 {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        let m = node.child("m")?;
        let blocks = m
            .children
            .iter()
            .map(|(name, b)| {
                expect(b, "Bottleneck")
                    .and_then(|b| Bottleneck::load(b, &format!("{prefix}.m.{name}"), l))
            })
            .collect::<LoadResult<_>>()?;
        Ok(Self {
            cv1: ConvUnit::load_conv(node.child("cv1")?, &format!("{prefix}.cv1"), l)?,
            cv2: ConvUnit::load_conv(node.child("cv2")?, &format!("{prefix}.cv2"), l)?,
            cv3: ConvUnit::load_conv(node.child("cv3")?, &format!("{prefix}.cv3"), l)?,
            m: blocks,
        })
    }
}

impl Module for C3 {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut a = self.cv1.forward(x)?;
        for b in &self.m {
            a = b.forward(&a)?;
        }
        let b = self.cv2.forward(x)?;
        self.cv3.forward(&Tensor::cat(&[a, b], 1)?)
    }
}

/// An inner block of `C2f` / `C3k2`.
#[derive(Debug, Clone)]
pub(crate) enum Inner {
    Bottleneck(Bottleneck),
    C3k(C3),
}

impl Module for Inner {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Inner::Bottleneck(b) => b.forward(x),
            Inner::C3k(c) => c.forward(x),
        }
    }
}

/// `C2f` / `C3k2`: split in two, chain the inner blocks on the second half, concatenate
/// every intermediate.
#[derive(Debug, Clone)]
pub struct C2f {
    pub(crate) cv1: ConvUnit,
    pub(crate) cv2: ConvUnit,
    pub(crate) m: Vec<Inner>,
}

impl C2f {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        let m = node.child("m")?;
        let mut inner = Vec::new();
        for (name, b) in &m.children {
            let p = format!("{prefix}.m.{name}");
            inner.push(match b.class.as_str() {
                "Bottleneck" => Inner::Bottleneck(Bottleneck::load(b, &p, l)?),
                "C3k" => Inner::C3k(C3::load(b, &p, l)?),
                other => {
                    return Err(format!(
                        "{p}: unsupported module {other} inside {}",
                        node.class
                    ))
                }
            });
        }
        Ok(Self {
            cv1: ConvUnit::load_conv(node.child("cv1")?, &format!("{prefix}.cv1"), l)?,
            cv2: ConvUnit::load_conv(node.child("cv2")?, &format!("{prefix}.cv2"), l)?,
            m: inner,
        })
    }
}

impl Module for C2f {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.cv1.forward(x)?;
        let half = y.dim(1)? / 2;
        let mut parts = vec![y.narrow(1, 0, half)?, y.narrow(1, half, half)?];
        for block in &self.m {
            let last = parts
                .last()
                .cloned()
                .ok_or_else(|| candle_core::Error::msg("empty"))?;
            parts.push(block.forward(&last)?);
        }
        self.cv2.forward(&Tensor::cat(&parts, 1)?)
    }
}

/// `SPPF`: `n` chained same-size max pools, concatenated.
#[derive(Debug, Clone)]
pub struct Sppf {
    pub(crate) cv1: ConvUnit,
    pub(crate) cv2: ConvUnit,
    pub(crate) kernel: usize,
    pub(crate) n: usize,
    pub(crate) add: bool,
}

impl Sppf {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        let pool = node.child("m")?;
        let kernel = pool
            .ints("kernel_size")
            .and_then(|k| k.first().copied())
            .filter(|k| *k >= 1 && k % 2 == 1 && *k <= 31)
            .ok_or_else(|| format!("{prefix}.m: unsupported max-pool kernel"))?;
        let n = node.int("n").unwrap_or(3);
        if !(1..=8).contains(&n) {
            return Err(format!("{prefix}: unsupported pool count {n}"));
        }
        Ok(Self {
            cv1: ConvUnit::load_conv(node.child("cv1")?, &format!("{prefix}.cv1"), l)?,
            cv2: ConvUnit::load_conv(node.child("cv2")?, &format!("{prefix}.cv2"), l)?,
            kernel: kernel as usize,
            n: n as usize,
            add: node.bool("add").unwrap_or(false),
        })
    }
}

impl Module for Sppf {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut parts = vec![self.cv1.forward(x)?];
        for _ in 0..self.n {
            let last = parts
                .last()
                .cloned()
                .ok_or_else(|| candle_core::Error::msg("empty"))?;
            parts.push(max_pool_same(&last, self.kernel)?);
        }
        let y = self.cv2.forward(&Tensor::cat(&parts, 1)?)?;
        if self.add {
            x + y
        } else {
            Ok(y)
        }
    }
}

/// Max pool with stride 1 and padding `k / 2` (padding never wins): rows then columns.
fn max_pool_same(x: &Tensor, k: usize) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    let (b, c, h, w) = x.dims4()?;
    let data = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let r = k / 2;
    let mut out = vec![0f32; data.len()];
    out.par_chunks_mut(h * w)
        .zip(data.par_chunks(h * w))
        .for_each(|(dst, src)| {
            let mut rows = vec![0f32; h * w];
            for y in 0..h {
                for xx in 0..w {
                    let (lo, hi) = (xx.saturating_sub(r), (xx + r).min(w - 1));
                    rows[y * w + xx] = src[y * w + lo..=y * w + hi]
                        .iter()
                        .copied()
                        .fold(f32::NEG_INFINITY, f32::max);
                }
            }
            for y in 0..h {
                let (lo, hi) = (y.saturating_sub(r), (y + r).min(h - 1));
                for xx in 0..w {
                    let mut m = f32::NEG_INFINITY;
                    for yy in lo..=hi {
                        m = m.max(rows[yy * w + xx]);
                    }
                    dst[y * w + xx] = m;
                }
            }
        });
    Tensor::from_vec(out, (b, c, h, w), x.device())
}

/// YOLO11's `Attention`: multi-head self-attention over the pixels, plus a depthwise
/// positional conv on the values.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub(crate) qkv: ConvUnit,
    pub(crate) proj: ConvUnit,
    pub(crate) pe: ConvUnit,
    pub(crate) heads: usize,
    pub(crate) key_dim: usize,
    pub(crate) head_dim: usize,
    pub(crate) scale: f64,
}

impl Attention {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        let int = |n: &str| {
            node.int(n)
                .filter(|v| (1..=65_536).contains(v))
                .map(|v| v as usize)
                .ok_or_else(|| format!("{prefix}: missing or bad `{n}`"))
        };
        let scale = node
            .float("scale")
            .ok_or_else(|| format!("{prefix}: missing `scale`"))?;
        Ok(Self {
            qkv: ConvUnit::load_conv(node.child("qkv")?, &format!("{prefix}.qkv"), l)?,
            proj: ConvUnit::load_conv(node.child("proj")?, &format!("{prefix}.proj"), l)?,
            pe: ConvUnit::load_conv(node.child("pe")?, &format!("{prefix}.pe"), l)?,
            heads: int("num_heads")?,
            key_dim: int("key_dim")?,
            head_dim: int("head_dim")?,
            scale,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = h * w;
        let qkv =
            self.qkv
                .forward(x)?
                .reshape((b, self.heads, self.key_dim * 2 + self.head_dim, n))?;
        let q = qkv.narrow(2, 0, self.key_dim)?;
        let k = qkv.narrow(2, self.key_dim, self.key_dim)?;
        let v = qkv.narrow(2, self.key_dim * 2, self.head_dim)?;
        // (q * scale)^T k: (b, heads, n, n), softmax over the last axis.
        let attn = (q * self.scale)?
            .transpose(2, 3)?
            .contiguous()?
            .matmul(&k.contiguous()?)?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let v = v.contiguous()?;
        let y = v
            .matmul(&attn.transpose(2, 3)?.contiguous()?)?
            .reshape((b, c, h, w))?;
        let pe = self.pe.forward(&v.reshape((b, c, h, w))?)?;
        self.proj.forward(&(y + pe)?)
    }
}

/// `PSABlock`: attention then a two-conv feed-forward, each with a residual when `add`.
#[derive(Debug, Clone)]
pub(crate) struct PsaBlock {
    pub(crate) attn: Attention,
    pub(crate) ffn: [ConvUnit; 2],
    pub(crate) add: bool,
}

impl Module for PsaBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let a = self.attn.forward(x)?;
        let x = if self.add { (x + a)? } else { a };
        let f = self.ffn[1].forward(&self.ffn[0].forward(&x)?)?;
        if self.add {
            x + f
        } else {
            Ok(f)
        }
    }
}

/// `C2PSA`: split in two, attention blocks on the second half, join.
#[derive(Debug, Clone)]
pub struct C2psa {
    pub(crate) cv1: ConvUnit,
    pub(crate) cv2: ConvUnit,
    pub(crate) m: Vec<PsaBlock>,
}

impl C2psa {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        let mut m = Vec::new();
        for (name, block) in &node.child("m")?.children {
            let p = format!("{prefix}.m.{name}");
            expect(block, "PSABlock")?;
            let ffn = block.child("ffn")?;
            let (Some(f0), Some(f1)) = (ffn.maybe_child("0"), ffn.maybe_child("1")) else {
                return Err(format!("{p}.ffn: expected two convolutions"));
            };
            m.push(PsaBlock {
                attn: Attention::load(
                    expect(block.child("attn")?, "Attention")?,
                    &format!("{p}.attn"),
                    l,
                )?,
                ffn: [
                    ConvUnit::load_conv(f0, &format!("{p}.ffn.0"), l)?,
                    ConvUnit::load_conv(f1, &format!("{p}.ffn.1"), l)?,
                ],
                add: block.bool("add").unwrap_or(true),
            });
        }
        Ok(Self {
            cv1: ConvUnit::load_conv(node.child("cv1")?, &format!("{prefix}.cv1"), l)?,
            cv2: ConvUnit::load_conv(node.child("cv2")?, &format!("{prefix}.cv2"), l)?,
            m,
        })
    }
}

impl Module for C2psa {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.cv1.forward(x)?;
        let half = y.dim(1)? / 2;
        let a = y.narrow(1, 0, half)?;
        let mut b = y.narrow(1, half, y.dim(1)? - half)?.contiguous()?;
        for block in &self.m {
            b = block.forward(&b)?;
        }
        self.cv2.forward(&Tensor::cat(&[a, b], 1)?)
    }
}

/// A node checked to be of class `class`.
fn expect<'a>(node: &'a ModuleNode, class: &str) -> LoadResult<&'a ModuleNode> {
    if node.class == class {
        Ok(node)
    } else {
        Err(format!("expected a {class}, found {}", node.class))
    }
}

/// A chain of convolutions (a `Sequential` of `Conv`s, nested `Sequential`s and a final
/// `Conv2d`), as in the detection head's branches.
#[derive(Debug, Clone)]
pub struct ConvChain(pub(crate) Vec<ConvUnit>);

impl ConvChain {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        let mut units = Vec::new();
        Self::gather(node, prefix, l, &mut units, 0)?;
        Ok(Self(units))
    }

    fn gather(
        node: &ModuleNode,
        prefix: &str,
        l: &Loader,
        units: &mut Vec<ConvUnit>,
        depth: usize,
    ) -> LoadResult<()> {
        match node.class.as_str() {
            "Sequential" if depth < 4 => {
                for (name, child) in &node.children {
                    Self::gather(child, &format!("{prefix}.{name}"), l, units, depth + 1)?;
                }
                Ok(())
            }
            "Conv" | "DWConv" => {
                units.push(ConvUnit::load_conv(node, prefix, l)?);
                Ok(())
            }
            "Conv2d" => {
                units.push(ConvUnit::load_conv2d(node, prefix, l)?);
                Ok(())
            }
            other => Err(format!("{prefix}: unsupported module {other} in the head")),
        }
    }
}

impl Module for ConvChain {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for unit in &self.0 {
            y = unit.forward(&y)?;
        }
        Ok(y)
    }
}

/// The `Detect` head's branches: per level, box distributions (`4 * reg_max` channels)
/// and class logits (`nc` channels).
#[derive(Debug, Clone)]
pub struct DetectHead {
    pub(crate) boxes: Vec<ConvChain>,
    pub(crate) classes: Vec<ConvChain>,
    /// DFL bins per side.
    pub reg_max: usize,
    /// Number of classes.
    pub nc: usize,
}

impl DetectHead {
    fn load(node: &ModuleNode, prefix: &str, l: &Loader) -> LoadResult<Self> {
        if node.maybe_child("one2one_cv2").is_some() && node.maybe_child("cv2").is_none() {
            return Err(format!(
                "{prefix}: end-to-end (NMS-free) heads are not supported"
            ));
        }
        let nc = node
            .int("nc")
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| format!("{prefix}: missing or bad `nc`"))? as usize;
        let reg_max =
            node.int("reg_max")
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| format!("{prefix}: missing or bad `reg_max`"))? as usize;
        let chains = |name: &str| -> LoadResult<Vec<ConvChain>> {
            node.child(name)?
                .children
                .iter()
                .map(|(i, c)| ConvChain::load(c, &format!("{prefix}.{name}.{i}"), l))
                .collect()
        };
        let boxes = chains("cv2")?;
        let classes = chains("cv3")?;
        if boxes.iter().chain(&classes).any(|c| c.0.is_empty()) {
            return Err(format!("{prefix}: an empty head branch"));
        }
        if boxes.is_empty() || boxes.len() != classes.len() {
            return Err(format!("{prefix}: box and class branches do not match"));
        }
        Ok(Self {
            boxes,
            classes,
            reg_max,
            nc,
        })
    }

    /// Levels (feature maps) the head reads.
    pub fn levels(&self) -> usize {
        self.boxes.len()
    }

    /// Per level: (box distributions `(4 * reg_max, h * w)`, class logits `(nc, h * w)`)
    /// flattened row-major, with the level's (h, w).
    pub fn forward_levels(&self, feats: &[Tensor]) -> candle_core::Result<Vec<LevelOutput>> {
        let mut out = Vec::with_capacity(feats.len());
        for ((x, b), c) in feats.iter().zip(&self.boxes).zip(&self.classes) {
            let (_, _, h, w) = x.dims4()?;
            let boxes = b.forward(x)?;
            let logits = c.forward(x)?;
            if boxes.dim(1)? != 4 * self.reg_max || logits.dim(1)? != self.nc {
                candle_core::bail!(
                    "the head gives {} box and {} class channels, expected {} and {}",
                    boxes.dim(1)?,
                    logits.dim(1)?,
                    4 * self.reg_max,
                    self.nc
                );
            }
            out.push(LevelOutput {
                boxes: boxes.flatten_all()?.to_vec1::<f32>()?,
                logits: logits.flatten_all()?.to_vec1::<f32>()?,
                h,
                w,
                channels_last: false,
            });
        }
        Ok(out)
    }
}

/// One layer of the graph.
#[derive(Debug, Clone)]
pub enum Block {
    /// `Conv`.
    Conv(ConvUnit),
    /// `C2f` or `C3k2`.
    C2f(C2f),
    /// `C3` or `C3k`.
    C3(C3),
    /// `SPPF`.
    Sppf(Sppf),
    /// `C2PSA`.
    C2psa(C2psa),
    /// `nn.Upsample`, nearest, integer factor.
    Upsample(usize),
    /// `Concat` along channels.
    Concat,
    /// `Detect`.
    Detect(DetectHead),
}

impl Block {
    /// Loads layer `index` (`model.<index>`) of class `node.class`.
    pub(crate) fn load(node: &ModuleNode, index: usize, l: &Loader) -> LoadResult<Self> {
        let prefix = format!("model.{index}");
        Ok(match node.class.as_str() {
            "Conv" => Block::Conv(ConvUnit::load_conv(node, &prefix, l)?),
            "C2f" | "C3k2" => Block::C2f(C2f::load(node, &prefix, l)?),
            "C3" | "C3k" => Block::C3(C3::load(node, &prefix, l)?),
            "SPPF" => Block::Sppf(Sppf::load(node, &prefix, l)?),
            "C2PSA" => Block::C2psa(C2psa::load(node, &prefix, l)?),
            "Upsample" => {
                if node.str("mode").is_some_and(|m| m != "nearest") {
                    return Err(format!("{prefix}: only nearest upsampling is supported"));
                }
                let factor = node
                    .float("scale_factor")
                    .filter(|f| f.fract() == 0.0 && (1.0..=16.0).contains(f))
                    .ok_or_else(|| format!("{prefix}: unsupported upsampling factor"))?;
                Block::Upsample(factor as usize)
            }
            "Concat" => {
                if node.int("d").unwrap_or(1) != 1 {
                    return Err(format!("{prefix}: only channel concatenation is supported"));
                }
                Block::Concat
            }
            "Detect" => Block::Detect(DetectHead::load(node, &prefix, l)?),
            other => {
                return Err(format!(
                    "layer {index}: unsupported module {other} (supported: YOLOv8 and YOLO11 detection)"
                ))
            }
        })
    }

    /// Runs the layer on its inputs (several only for `Concat`).
    pub fn forward(&self, inputs: &[Tensor]) -> candle_core::Result<Tensor> {
        let first = || {
            inputs
                .first()
                .ok_or_else(|| candle_core::Error::msg("a layer without input"))
        };
        match self {
            Block::Conv(c) => c.forward(first()?),
            Block::C2f(c) => c.forward(first()?),
            Block::C3(c) => c.forward(first()?),
            Block::Sppf(s) => s.forward(first()?),
            Block::C2psa(c) => c.forward(first()?),
            Block::Upsample(f) => {
                let x = first()?;
                let (_, _, h, w) = x.dims4()?;
                x.upsample_nearest2d(h * f, w * f)
            }
            Block::Concat => Tensor::cat(inputs, 1),
            Block::Detect(_) => candle_core::bail!("the Detect head is run by the graph"),
        }
    }

    /// The factor by which the layer shrinks its input (2 for a stride-2 conv), as a
    /// ratio (numerator, denominator).
    pub fn stride_factor(&self) -> (usize, usize) {
        match self {
            Block::Conv(c) => (c.stride(), 1),
            Block::Upsample(f) => (1, *f),
            _ => (1, 1),
        }
    }
}
