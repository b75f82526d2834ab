//! The detector's CPU path: the same network as [`crate::graph`], channels-last on plain
//! `f32` buffers ([`Map`]), with the CPU kernels of `mobilesam-kernels`, bias and SiLU fused into
//! each kernel's last pass:
//! - 1x1 convolutions as one matrix product per row block; a 1x1 convolution of maps side
//!   by side (C2f's, C3's, SPPF's and C2PSA's last) sums one product per map instead of
//!   copying them into one;
//! - stride-1 3x3 convolutions by Winograd F(4x4, 3x3), or F(2x2, 3x3) for wide layers;
//! - the first (RGB) convolution directly, other 3x3 ones through im2col blocks;
//! - depthwise 3x3 vectorized over channels.
//!
//! Maps take their buffers from the previous maps of the same size (per thread), and a
//! kept output is shared, not copied. candle runs every operation as its own pass over a
//! fresh NCHW tensor, which on the CPU costs more than the arithmetic.
//!
//! Built from the loaded (BatchNorm-folded) blocks; any convolution outside these shapes
//! makes [`FusedGraph::new`] refuse, and the detector keeps the candle path.

use std::ops::Range;
use std::rc::Rc;

use rayon::prelude::*;

pub mod map;
pub mod parts;

use crate::blocks::{
    Attention, Block, Bottleneck, C2f, C2psa, ConvChain, ConvUnit, DetectHead, Inner, PsaBlock,
    Sppf, C3,
};
use crate::graph::Graph;
use crate::postprocess::LevelOutput;
pub use map::Map;
use mobilesam_kernels::conv::Conv3x3;
use mobilesam_kernels::depthwise::DepthwiseConv3x3;
use mobilesam_kernels::epilogue::{apply_epilogue, Activation, Epilogue};
use mobilesam_kernels::linear::par_row_blocks;
use mobilesam_kernels::math::scaled_softmax;
use mobilesam_kernels::matmul::{matmul, MatRef};
use mobilesam_kernels::profile::step;
use mobilesam_kernels::winograd::Winograd3x3;
use mobilesam_kernels::winograd4::Winograd4x4;
use parts::{spread_upsampled, Part};

/// Input times output channels from which a stride-1 3x3 convolution takes Winograd
/// F(2x2, 3x3) instead of F(4x4, 3x3). Wide layers are the deep ones, on small maps: there
/// F(4x4, 3x3)'s 36 transformed weight matrices (4 times the weight, against 1.8 times)
/// are streamed for few tiles, and cost more memory, than its fewer products save.
const WIDE_WINOGRAD: usize = 128 * 128;

/// One convolution on the CPU kernels.
#[derive(Debug, Clone)]
enum Kernel {
    /// 1x1, stride 1: weight `(in, out)` row-major.
    Pointwise {
        weight: Vec<f32>,
        bias: Vec<f32>,
        ci: usize,
    },
    /// 3x3, padding 1, stride 1 or 2.
    Dense3(Conv3x3),
    /// 3x3, padding 1, stride 1, channels in multiples of 16, narrow layers: Winograd
    /// F(4x4, 3x3).
    Winograd4(Winograd4x4),
    /// 3x3, padding 1, stride 1, channels in multiples of 16, wide layers: Winograd
    /// F(2x2, 3x3).
    Winograd2(Winograd3x3),
    /// Depthwise 3x3, padding 1, stride 1 or 2.
    Depthwise3(DepthwiseConv3x3),
}

impl Kernel {
    /// The name of its step in [`mobilesam_kernels::profile`].
    fn step_name(&self) -> &'static str {
        match self {
            Kernel::Pointwise { .. } => "detector conv 1x1",
            Kernel::Dense3(_) => "detector conv 3x3 im2col",
            Kernel::Winograd4(_) => "detector conv 3x3 winograd 4x4",
            Kernel::Winograd2(_) => "detector conv 3x3 winograd 2x2",
            Kernel::Depthwise3(_) => "detector conv 3x3 depthwise",
        }
    }
}

/// A convolution with its activation.
#[derive(Debug, Clone)]
struct Conv {
    kernel: Kernel,
    activation: Activation,
    co: usize,
}

fn host(t: &candle_core::Tensor) -> Result<Vec<f32>, String> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| e.to_string())
}

impl Conv {
    fn new(u: &ConvUnit) -> Result<Self, String> {
        let (co, cig, kh, _) = u.weight.dims4().map_err(|e| e.to_string())?;
        let weight = host(&u.weight)?;
        let bias = host(&u.bias)?;
        let kernel = match (kh, u.groups, u.stride, u.padding) {
            (1, 1, 1, 0) => {
                let mut packed = vec![0.0; cig * co];
                for o in 0..co {
                    for i in 0..cig {
                        packed[i * co + o] = weight[o * cig + i];
                    }
                }
                Kernel::Pointwise {
                    weight: packed,
                    bias,
                    ci: cig,
                }
            }
            (3, 1, 1, 1) if Winograd4x4::supports(cig, co) && cig * co < WIDE_WINOGRAD => {
                Kernel::Winograd4(Winograd4x4::from_torch(&weight, Some(bias), cig, co))
            }
            (3, 1, 1, 1) if Winograd3x3::supports(cig, co) => {
                Kernel::Winograd2(Winograd3x3::from_torch(&weight, Some(bias), cig, co))
            }
            (3, 1, 1 | 2, 1) => {
                Kernel::Dense3(Conv3x3::from_torch(&weight, Some(bias), cig, co, u.stride))
            }
            (3, g, 1 | 2, 1) if g == co && cig == 1 => {
                Kernel::Depthwise3(DepthwiseConv3x3::from_torch(&weight, bias, u.stride))
            }
            _ => {
                return Err(format!(
                    "no CPU kernel for a {kh}x{kh} convolution, stride {}, padding {}, groups {}",
                    u.stride, u.padding, u.groups
                ))
            }
        };
        Ok(Self {
            kernel,
            activation: if u.silu {
                Activation::Silu
            } else {
                Activation::Identity
            },
            co,
        })
    }

    /// This convolution of the maps side by side along channels. A 1x1 convolution
    /// multiplies each map by its rows of the weight and sums (no concatenated copy is
    /// made); any other concatenates first.
    fn forward_concat(&self, parts: &[&Map]) -> Map {
        self.forward_parts(&Part::plain_all(parts))
    }

    /// [`Self::forward_concat`] of parts, an upsampled one taken at its own size by a 1x1
    /// convolution ([`parts`]) and upsampled first by any other.
    fn forward_parts(&self, parts: &[Part]) -> Map {
        if let [Part { map, up: 1 }] = parts {
            return self.forward(map);
        }
        match self.pointwise_weights(parts) {
            Some((weight, bias)) => step(self.kernel.step_name(), || {
                self.pointwise(parts, weight, bias, 0..self.co)
            }),
            None => self.forward(&joined(parts)),
        }
    }

    /// This convolution of `parts` side by side, its output channels `0..half` and
    /// `half..` as two maps, as Ultralytics splits them (`chunk(2, 1)`, `split`): a 1x1
    /// convolution computes each half into its own map, from the parts where they lie,
    /// instead of copying the parts into one map and the halves out of another (and an
    /// upsampled part's share at its own size, see [`parts`]).
    fn forward_halves(&self, parts: &[Part]) -> (Map, Map) {
        let half = self.co / 2;
        match self.pointwise_weights(parts) {
            Some((weight, bias)) => step(self.kernel.step_name(), || {
                (
                    self.pointwise(parts, weight, bias, 0..half),
                    self.pointwise(parts, weight, bias, half..self.co),
                )
            }),
            None => {
                let y = self.forward_parts(parts);
                (y.channels(0, half), y.channels(half, y.c - half))
            }
        }
    }

    /// The `(in, out)` weight and the bias of a 1x1 convolution whose input channels are
    /// those of `parts` together; `None` for any other kernel.
    fn pointwise_weights(&self, parts: &[Part]) -> Option<(&[f32], &[f32])> {
        match &self.kernel {
            Kernel::Pointwise { weight, bias, ci }
                if parts.iter().map(Part::channels).sum::<usize>() == *ci =>
            {
                Some((weight, bias))
            }
            _ => None,
        }
    }

    /// Output channels `outputs` of the 1x1 convolution of `parts` side by side: per row
    /// block, one product per part with its rows of the `(in, out)` weight, summed, then
    /// bias and activation. An upsampled part's product is made at its own size first and
    /// spread over the row blocks.
    fn pointwise(
        &self,
        parts: &[Part],
        weight: &[f32],
        bias: &[f32],
        outputs: Range<usize>,
    ) -> Map {
        let (co, width) = (self.co, outputs.len());
        let (h, w) = parts[0].size();
        // Each part's rows of the weight, restricted to `outputs`.
        let weights: Vec<MatRef> = parts
            .iter()
            .scan(0, |first_row, part| {
                let b = MatRef::rows(
                    &weight[*first_row * co + outputs.start..],
                    part.channels(),
                    width,
                    co,
                );
                *first_row += part.channels();
                Some(b)
            })
            .collect();
        let small: Vec<Option<Map>> = parts
            .iter()
            .zip(&weights)
            .map(|(part, &b)| (part.up > 1).then(|| product(part.map, b)))
            .collect();
        let mut out = Map::stale(h, w, width);
        let epilogue = Epilogue {
            bias: Some(&bias[outputs.clone()]),
            activation: self.activation,
        };
        par_row_blocks(&mut out.data, width, |p0, rows| {
            for (i, ((part, &b), small)) in parts.iter().zip(&weights).zip(&small).enumerate() {
                match small {
                    Some(small) => spread_upsampled(small, part.up, w, p0, rows, i > 0),
                    None => multiply_rows(part.map, b, p0, rows, i > 0),
                }
            }
            apply_epilogue(rows, width, epilogue, None);
        });
        out
    }

    fn forward(&self, x: &Map) -> Map {
        step(self.kernel.step_name(), || self.run(x))
    }

    fn run(&self, x: &Map) -> Map {
        let activation = self.activation;
        match &self.kernel {
            Kernel::Pointwise { weight, bias, .. } => {
                self.pointwise(&[Part::plain(x)], weight, bias, 0..self.co)
            }
            Kernel::Dense3(conv) => {
                let (ho, wo) = conv.out_size(x.h, x.w);
                let mut out = Map::stale(ho, wo, self.co);
                conv.forward(&x.data, x.h, x.w, &mut out.data, activation);
                out
            }
            Kernel::Winograd4(conv) => {
                let mut out = Map::stale(x.h, x.w, self.co);
                conv.forward(&x.data, x.h, x.w, &mut out.data, activation);
                out
            }
            Kernel::Winograd2(conv) => {
                let mut out = Map::stale(x.h, x.w, self.co);
                conv.forward(&x.data, x.h, x.w, &mut out.data, activation);
                out
            }
            Kernel::Depthwise3(conv) => {
                let (ho, wo) = conv.out_size(x.h, x.w);
                let mut out = Map::stale(ho, wo, self.co);
                conv.forward(&x.data, x.h, x.w, &mut out.data, activation);
                out
            }
        }
    }
}

/// Pixels `p0..` of `x` (as `(pixels, channels)`) times `b` into `rows` (`b.cols` wide),
/// or added to them with `accumulate`.
fn multiply_rows(x: &Map, b: MatRef, p0: usize, rows: &mut [f32], accumulate: bool) {
    let (n, c) = (rows.len() / b.cols, x.c);
    let a = MatRef::rows(&x.data[p0 * c..(p0 + n) * c], n, c, c);
    matmul(a, b, rows, b.cols, accumulate);
}

/// `x` (as `(pixels, channels)`) times `b`, as a map: no bias, no activation.
fn product(x: &Map, b: MatRef) -> Map {
    let mut out = Map::stale(x.h, x.w, b.cols);
    par_row_blocks(&mut out.data, b.cols, |p0, rows| {
        multiply_rows(x, b, p0, rows, false)
    });
    out
}

/// The map an upsampled part stands for; `None` for a plain one.
fn made(part: &Part) -> Option<Map> {
    (part.up > 1).then(|| step("detector copies", || upsample(part.map, part.up)))
}

/// `parts` side by side in one map, upsampled ones upsampled.
fn joined(parts: &[Part]) -> Map {
    let upsampled: Vec<Option<Map>> = parts.iter().map(made).collect();
    let maps: Vec<&Map> = parts
        .iter()
        .zip(&upsampled)
        .map(|(p, u)| u.as_ref().unwrap_or(p.map))
        .collect();
    Map::concat(&maps)
}

#[derive(Debug, Clone)]
struct FastBottleneck {
    cv1: Conv,
    cv2: Conv,
    add: bool,
}

impl FastBottleneck {
    fn new(b: &Bottleneck) -> Result<Self, String> {
        Ok(Self {
            cv1: Conv::new(&b.cv1)?,
            cv2: Conv::new(&b.cv2)?,
            add: b.add,
        })
    }

    fn forward(&self, x: &Map) -> Map {
        let y = self.cv2.forward(&self.cv1.forward(x));
        if self.add {
            y.add(x)
        } else {
            y
        }
    }
}

#[derive(Debug, Clone)]
struct FastC3 {
    cv1: Conv,
    cv2: Conv,
    cv3: Conv,
    m: Vec<FastBottleneck>,
}

impl FastC3 {
    fn new(c: &C3) -> Result<Self, String> {
        Ok(Self {
            cv1: Conv::new(&c.cv1)?,
            cv2: Conv::new(&c.cv2)?,
            cv3: Conv::new(&c.cv3)?,
            m: c.m
                .iter()
                .map(FastBottleneck::new)
                .collect::<Result<_, _>>()?,
        })
    }

    fn forward(&self, x: &Map) -> Map {
        let mut a = self.cv1.forward(x);
        for b in &self.m {
            a = b.forward(&a);
        }
        let b = self.cv2.forward(x);
        self.cv3.forward_concat(&[&a, &b])
    }
}

#[derive(Debug, Clone)]
enum FastInner {
    Bottleneck(FastBottleneck),
    C3k(FastC3),
}

#[derive(Debug, Clone)]
struct FastC2f {
    cv1: Conv,
    cv2: Conv,
    m: Vec<FastInner>,
}

impl FastC2f {
    fn new(c: &C2f) -> Result<Self, String> {
        let m =
            c.m.iter()
                .map(|i| {
                    Ok(match i {
                        Inner::Bottleneck(b) => FastInner::Bottleneck(FastBottleneck::new(b)?),
                        Inner::C3k(c) => FastInner::C3k(FastC3::new(c)?),
                    })
                })
                .collect::<Result<_, String>>()?;
        Ok(Self {
            cv1: Conv::new(&c.cv1)?,
            cv2: Conv::new(&c.cv2)?,
            m,
        })
    }

    /// This block on `parts` side by side along channels (one map, or the inputs of a
    /// Concat that only this block reads).
    fn forward(&self, parts: &[Part]) -> Map {
        let (first, second) = self.cv1.forward_halves(parts);
        let mut outs = vec![second];
        for block in &self.m {
            let last = &outs[outs.len() - 1];
            let next = match block {
                FastInner::Bottleneck(b) => b.forward(last),
                FastInner::C3k(c) => c.forward(last),
            };
            outs.push(next);
        }
        let mut parts: Vec<&Map> = vec![&first];
        parts.extend(outs.iter());
        self.cv2.forward_concat(&parts)
    }
}

#[derive(Debug, Clone)]
struct FastSppf {
    cv1: Conv,
    cv2: Conv,
    kernel: usize,
    n: usize,
    add: bool,
}

impl FastSppf {
    fn forward(&self, x: &Map) -> Map {
        let mut parts = vec![self.cv1.forward(x)];
        for _ in 0..self.n {
            let next = step("detector pool", || {
                max_pool(&parts[parts.len() - 1], self.kernel)
            });
            parts.push(next);
        }
        let refs: Vec<&Map> = parts.iter().collect();
        let y = self.cv2.forward_concat(&refs);
        if self.add {
            y.add(x)
        } else {
            y
        }
    }
}

/// Max pool, stride 1, padding `k / 2` (padding never wins), channels-last.
fn max_pool(x: &Map, k: usize) -> Map {
    let (h, w, c) = (x.h, x.w, x.c);
    let r = k / 2;
    let mut rows = Map::stale(h, w, c);
    rows.data
        .par_chunks_mut(w * c)
        .enumerate()
        .for_each(|(y, dst)| {
            let src = &x.data[y * w * c..(y + 1) * w * c];
            for xx in 0..w {
                let d = &mut dst[xx * c..(xx + 1) * c];
                d.copy_from_slice(&src[xx * c..(xx + 1) * c]);
                for sx in xx.saturating_sub(r)..=(xx + r).min(w - 1) {
                    for (a, b) in d.iter_mut().zip(&src[sx * c..(sx + 1) * c]) {
                        *a = a.max(*b);
                    }
                }
            }
        });
    let mut out = Map::stale(h, w, c);
    out.data
        .par_chunks_mut(w * c)
        .enumerate()
        .for_each(|(y, dst)| {
            dst.copy_from_slice(&rows.data[y * w * c..(y + 1) * w * c]);
            for sy in y.saturating_sub(r)..=(y + r).min(h - 1) {
                for (a, b) in dst.iter_mut().zip(&rows.data[sy * w * c..(sy + 1) * w * c]) {
                    *a = a.max(*b);
                }
            }
        });
    out
}

#[derive(Debug, Clone)]
struct FastAttention {
    qkv: Conv,
    proj: Conv,
    pe: Conv,
    heads: usize,
    key_dim: usize,
    head_dim: usize,
    scale: f32,
}

impl FastAttention {
    fn new(a: &Attention) -> Result<Self, String> {
        Ok(Self {
            qkv: Conv::new(&a.qkv)?,
            proj: Conv::new(&a.proj)?,
            pe: Conv::new(&a.pe)?,
            heads: a.heads,
            key_dim: a.key_dim,
            head_dim: a.head_dim,
            scale: a.scale as f32,
        })
    }

    fn forward(&self, x: &Map) -> Map {
        let qkv = self.qkv.forward(x);
        let n = x.h * x.w;
        let (kd, hd) = (self.key_dim, self.head_dim);
        let per_head = 2 * kd + hd;
        let width = qkv.c;
        let c = self.heads * hd;
        // The values as a map of their own (channel head * hd + j), for `pe`.
        let mut v = Map::stale(x.h, x.w, c);
        for (p, dst) in v.data.chunks_exact_mut(c).enumerate() {
            for h in 0..self.heads {
                let src = &qkv.data[p * width + h * per_head + 2 * kd..][..hd];
                dst[h * hd..(h + 1) * hd].copy_from_slice(src);
            }
        }
        let mut out = Map::stale(x.h, x.w, c);
        let mut scores = vec![0f32; n * n];
        for h in 0..self.heads {
            let base = h * per_head;
            // (q * scale)^T k, as Ultralytics scales q first.
            let mut q = vec![0f32; n * kd];
            for (p, dst) in q.chunks_exact_mut(kd).enumerate() {
                for (d, s) in dst.iter_mut().zip(&qkv.data[p * width + base..][..kd]) {
                    *d = s * self.scale;
                }
            }
            let k = MatRef::transposed(&qkv.data[base + kd..], kd, n, width);
            par_row_blocks(&mut scores, n, |p0, rows| {
                let m = rows.len() / n;
                matmul(MatRef::rows(&q[p0 * kd..], m, kd, kd), k, rows, n, false);
                for row in rows.chunks_exact_mut(n) {
                    scaled_softmax(row, 1.0, None);
                }
            });
            let vh = MatRef::rows(&v.data[h * hd..], n, hd, c);
            matmul(
                MatRef::rows(&scores, n, n, n),
                vh,
                &mut out.data[h * hd..],
                c,
                false,
            );
        }
        let pe = self.pe.forward(&v);
        self.proj.forward(&out.add(&pe))
    }
}

#[derive(Debug, Clone)]
struct FastPsa {
    attn: FastAttention,
    ffn: [Conv; 2],
    add: bool,
}

impl FastPsa {
    fn new(b: &PsaBlock) -> Result<Self, String> {
        Ok(Self {
            attn: FastAttention::new(&b.attn)?,
            ffn: [Conv::new(&b.ffn[0])?, Conv::new(&b.ffn[1])?],
            add: b.add,
        })
    }

    fn forward(&self, x: &Map) -> Map {
        let a = self.attn.forward(x);
        let x = if self.add { a.add(x) } else { a };
        let f = self.ffn[1].forward(&self.ffn[0].forward(&x));
        if self.add {
            f.add(&x)
        } else {
            f
        }
    }
}

#[derive(Debug, Clone)]
struct FastC2psa {
    cv1: Conv,
    cv2: Conv,
    m: Vec<FastPsa>,
}

impl FastC2psa {
    fn new(c: &C2psa) -> Result<Self, String> {
        Ok(Self {
            cv1: Conv::new(&c.cv1)?,
            cv2: Conv::new(&c.cv2)?,
            m: c.m.iter().map(FastPsa::new).collect::<Result<_, _>>()?,
        })
    }

    fn forward(&self, x: &Map) -> Map {
        let (a, mut b) = self.cv1.forward_halves(&[Part::plain(x)]);
        for block in &self.m {
            b = block.forward(&b);
        }
        self.cv2.forward_concat(&[&a, &b])
    }
}

#[derive(Debug, Clone)]
enum FastBlock {
    Conv(Conv),
    C2f(FastC2f),
    C3(FastC3),
    Sppf(FastSppf),
    C2psa(FastC2psa),
    Upsample(usize),
    Concat,
}

impl FastBlock {
    fn new(b: &Block) -> Result<Self, String> {
        Ok(match b {
            Block::Conv(c) => FastBlock::Conv(Conv::new(c)?),
            Block::C2f(c) => FastBlock::C2f(FastC2f::new(c)?),
            Block::C3(c) => FastBlock::C3(FastC3::new(c)?),
            Block::Sppf(s) => FastBlock::Sppf(sppf(s)?),
            Block::C2psa(c) => FastBlock::C2psa(FastC2psa::new(c)?),
            Block::Upsample(f) => FastBlock::Upsample(*f),
            Block::Concat => FastBlock::Concat,
            Block::Detect(_) => return Err("the head is not a layer".into()),
        })
    }

    fn forward(&self, inputs: &[&Map]) -> Map {
        match self {
            FastBlock::Conv(c) => c.forward(inputs[0]),
            FastBlock::C2f(c) => c.forward(&[Part::plain(inputs[0])]),
            FastBlock::C3(c) => c.forward(inputs[0]),
            FastBlock::Sppf(s) => s.forward(inputs[0]),
            FastBlock::C2psa(c) => c.forward(inputs[0]),
            FastBlock::Upsample(f) => step("detector copies", || upsample(inputs[0], *f)),
            FastBlock::Concat => Map::concat(inputs),
        }
    }
}

fn sppf(s: &Sppf) -> Result<FastSppf, String> {
    Ok(FastSppf {
        cv1: Conv::new(&s.cv1)?,
        cv2: Conv::new(&s.cv2)?,
        kernel: s.kernel,
        n: s.n,
        add: s.add,
    })
}

/// Nearest-neighbour upsampling by an integer factor.
fn upsample(x: &Map, f: usize) -> Map {
    let (h, w, c) = (x.h * f, x.w * f, x.c);
    let mut out = Map::stale(h, w, c);
    out.data
        .par_chunks_mut(w * c)
        .enumerate()
        .for_each(|(y, dst)| {
            let src = &x.data[(y / f) * x.w * c..][..x.w * c];
            for (xx, d) in dst.chunks_exact_mut(c).enumerate() {
                d.copy_from_slice(&src[(xx / f) * c..(xx / f + 1) * c]);
            }
        });
    out
}

fn chain(c: &ConvChain) -> Result<Vec<Conv>, String> {
    c.0.iter().map(Conv::new).collect()
}

/// The whole network on the CPU kernels.
#[derive(Debug, Clone)]
pub struct FusedGraph {
    layers: Vec<(FastBlock, Vec<usize>)>,
    kept: Vec<bool>,
    /// Per layer: a Concat that only the next layer reads, a C2f. Its inputs are handed to
    /// that C2f as they are (its first convolution, 1x1, reads them in place), and the
    /// concatenated map is never made.
    concat_into_next: Vec<bool>,
    /// Per layer: an Upsample that only such a Concat reads. It is never made: the C2f's
    /// first convolution takes its input map and the factor ([`parts`]).
    upsample_into_next: Vec<bool>,
    head_inputs: Vec<usize>,
    boxes: Vec<Vec<Conv>>,
    classes: Vec<Vec<Conv>>,
}

impl FusedGraph {
    /// The CPU form of `graph`, or why it has none. The graph is one that has run (as
    /// [`crate::Detector::from_bytes`]'s probe pass does), which checks that the head ends
    /// in `4 * reg_max` box and `nc` class channels: the decoder reads the head's maps as
    /// they are.
    pub fn new(graph: &Graph) -> Result<Self, String> {
        let layers: Vec<(FastBlock, Vec<usize>)> = graph
            .layers
            .iter()
            .map(|l| Ok((FastBlock::new(&l.block)?, l.inputs.clone())))
            .collect::<Result<_, String>>()?;
        let concat_into_next = (0..layers.len())
            .map(|i| {
                matches!(layers[i].0, FastBlock::Concat)
                    && !graph.kept[i]
                    && matches!(layers.get(i + 1), Some((FastBlock::C2f(_), inputs)) if inputs[..] == [i])
            })
            .collect::<Vec<bool>>();
        let upsample_into_next = (0..layers.len())
            .map(|i| {
                matches!(layers[i].0, FastBlock::Upsample(_))
                    && !graph.kept[i]
                    && concat_into_next.get(i + 1).copied().unwrap_or(false)
            })
            .collect();
        let head: &DetectHead = graph.head();
        Ok(Self {
            layers,
            kept: graph.kept.clone(),
            concat_into_next,
            upsample_into_next,
            head_inputs: graph.head_inputs.clone(),
            boxes: head.boxes.iter().map(chain).collect::<Result<_, _>>()?,
            classes: head.classes.iter().map(chain).collect::<Result<_, _>>()?,
        })
    }

    /// Runs the network on a channels-last `(h, w, 3)` image and returns, per level, the
    /// box distributions and class logits as the head's maps leave them, channels last
    /// (`(h * w, channels)`: the decoder reads either layout), with the level's size.
    pub fn forward(&self, image: Map) -> Vec<LevelOutput> {
        // Shared, not copied: a kept output is also the next layer's input.
        let mut outputs: Vec<Option<Rc<Map>>> = vec![None; self.layers.len()];
        let mut previous = Rc::new(image);
        // `previous` stands for its upsampling by this factor (an Upsample in
        // `upsample_into_next`, not made).
        let mut previous_up = 1;
        // The inputs of a Concat in `concat_into_next`, with their factors, for the next
        // layer.
        let mut unjoined: Option<Vec<(Rc<Map>, usize)>> = None;
        for (i, (block, inputs)) in self.layers.iter().enumerate() {
            let y = if let Some(parts) = unjoined.take() {
                let parts: Vec<Part> = parts
                    .iter()
                    .map(|(map, up)| Part { map, up: *up })
                    .collect();
                match block {
                    FastBlock::C2f(c) => c.forward(&parts),
                    _ => block.forward(&[&joined(&parts)]),
                }
            } else {
                let maps: Vec<(Rc<Map>, usize)> = if inputs.is_empty() {
                    vec![(Rc::clone(&previous), previous_up)]
                } else {
                    inputs
                        .iter()
                        .map(|&j| match outputs.get(j) {
                            Some(Some(kept)) if j + 1 != i => (Rc::clone(kept), 1),
                            _ => (Rc::clone(&previous), previous_up),
                        })
                        .collect()
                };
                if self.concat_into_next[i] {
                    unjoined = Some(maps);
                    continue;
                }
                if let (true, FastBlock::Upsample(f), [(map, 1)]) =
                    (self.upsample_into_next[i], block, &maps[..])
                {
                    previous = Rc::clone(map);
                    previous_up = *f;
                    continue;
                }
                // An upsampled part only reaches the next C2f (by construction); were one
                // to reach any other layer, it is upsampled here.
                let upsampled: Vec<Option<Map>> = maps
                    .iter()
                    .map(|(map, up)| made(&Part { map, up: *up }))
                    .collect();
                let maps: Vec<&Map> = maps
                    .iter()
                    .zip(&upsampled)
                    .map(|((map, _), made)| made.as_ref().unwrap_or(map))
                    .collect();
                block.forward(&maps)
            };
            let y = Rc::new(y);
            if self.kept[i] {
                outputs[i] = Some(Rc::clone(&y));
            }
            previous = y;
            previous_up = 1;
        }
        self.head_inputs
            .iter()
            .zip(self.boxes.iter().zip(&self.classes))
            .map(|(&j, (b, c))| {
                let x: &Map = match outputs.get(j) {
                    Some(Some(kept)) => kept,
                    _ => &previous,
                };
                let run = |convs: &[Conv]| {
                    let mut y = convs[0].forward(x);
                    for conv in &convs[1..] {
                        y = conv.forward(&y);
                    }
                    std::mem::take(&mut y.data)
                };
                LevelOutput {
                    boxes: run(b),
                    logits: run(c),
                    h: x.h,
                    w: x.w,
                    channels_last: true,
                }
            })
            .collect()
    }
}
