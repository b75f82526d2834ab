//! CPU kernels on plain `f32` slices, for the fast CPU paths of the models (MobileSAM's
//! encoder and decoder, the YOLO detector).
//!
//! candle runs every operation as its own pass over a fresh tensor; on the CPU that costs
//! MobileSAM more than its arithmetic (allocation and page faults, strided copies for each
//! transpose, scalar `erf`, one convolution per group). These kernels work in place on
//! row-major buffers with channels last (token-major `(rows, channels)`), fuse what follows
//! a matrix product (bias, GELU, residual) into the product's row block while it is in
//! cache, and split every pass into row blocks over rayon's pool. Element-wise code is
//! compiled for AVX2+FMA (or NEON) with a run-time check, through `multiversion`.
//!
//! The crate depends on no model: besides the kernels it holds the one list of instruction
//! sets ([`multiversioned!`], also used by the model crate's mask upscale) and the
//! cooperative [`yield_point`]s the kernels reach. `ARCHITECTURE.md` lists the kernels.
//!
//! # Adding a kernel
//!
//! 1. Write it in `src/<name>.rs` with a unit test against a plain scalar loop; SIMD loops
//!    go inside `multiversioned! { ... }`.
//! 2. Every unit test of this crate also runs on emulated CPUs: `tests/emulated_cpu.sh`
//!    (run by `tests/run.sh`) runs this crate's lib tests under `qemu-x86_64 -cpu Haswell`
//!    (AVX2+FMA) and `-cpu Nehalem` (baseline), and [`dispatch`]'s test fails there unless
//!    the emulated CPU selects the path named for it.
//! 3. Call it from a model's CPU path (`mobilesam-model`'s `fused/`, `mobilesam-detector`'s
//!    `fused/`); check parity and speed (`mobilesam bench`).

#[macro_use]
mod simd_targets;

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
pub mod yield_point;
