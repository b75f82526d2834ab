//! CPU kernels on plain `f32` slices, for the encoder's and decoder's fast paths.
//!
//! candle runs every operation as its own pass over a fresh tensor; on the CPU that costs
//! MobileSAM more than its arithmetic (allocation and page faults, strided copies for each
//! transpose, scalar `erf`, one convolution per group). These kernels work in place on
//! row-major buffers with channels last (token-major `(rows, channels)`), fuse what follows
//! a matrix product (bias, GELU, residual) into the product's row block while it is in
//! cache, and split every pass into row blocks over rayon's pool. Element-wise code is
//! compiled for AVX2+FMA (or NEON) with a run-time check, through `multiversion`.

pub mod attention;
#[cfg(target_arch = "x86_64")]
pub mod attention_avx512;
pub mod buffers;
pub mod conv;
pub mod conv_narrow;
pub mod depthwise;
pub mod dispatch;
pub mod epilogue;
pub mod gelu;
pub mod inverted_residual;
pub mod layout;
pub mod linear;
pub mod math;
pub mod matmul;
pub mod norm;
pub mod profile;
pub mod winograd;
pub mod winograd4;
