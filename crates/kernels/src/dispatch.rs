//! Which instruction set the CPU kernels run with on this machine, as their run-time
//! dispatch chooses it: the `multiversion` clones (AVX-512, AVX2+FMA, NEON, or the baseline
//! build), and the AVX-512-only kernels (the GELU table, the 7x7-window attention).
//!
//! Tests run under an emulated CPU (`tests/emulated_cpu.sh`, QEMU) set
//! `MOBILESAM_EXPECT_INSTRUCTION_SET` and check here that the path they mean to test is
//! the one that runs.

use multiversion::multiversion;
use multiversion::target::match_target;

/// The widest kernels the dispatch picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstructionSet {
    /// x86-64 with AVX-512 F, VL, BW, DQ (and AVX2, FMA): the widest clones, the GELU table
    /// and the register attention kernel.
    Avx512,
    /// x86-64 with AVX2 and FMA: the AVX2 clones, the formula GELU, the general attention.
    Avx2Fma,
    /// AArch64 with NEON.
    Neon,
    /// The baseline build of the target (x86-64: SSE2 only).
    Baseline,
}

impl InstructionSet {
    /// Short name: `avx512`, `avx2+fma`, `neon`, `baseline`.
    pub fn name(self) -> &'static str {
        match self {
            InstructionSet::Avx512 => "avx512",
            InstructionSet::Avx2Fma => "avx2+fma",
            InstructionSet::Neon => "neon",
            InstructionSet::Baseline => "baseline",
        }
    }
}

/// The clone that `multiversion` runs on this CPU, for the target list every element-wise
/// kernel uses.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn kernel_instruction_set() -> InstructionSet {
    match_target! {
        "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma" => InstructionSet::Avx512,
        "x86_64+avx2+fma" => InstructionSet::Avx2Fma,
        "aarch64+neon" => InstructionSet::Neon,
        _ => InstructionSet::Baseline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the CPU reports, independently of `multiversion`.
    fn detected() -> InstructionSet {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f")
                && has!("avx512vl")
                && has!("avx512bw")
                && has!("avx512dq")
                && has!("avx2")
                && has!("fma")
            {
                return InstructionSet::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return InstructionSet::Avx2Fma;
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return InstructionSet::Neon;
        }
        InstructionSet::Baseline
    }

    #[test]
    fn the_dispatch_follows_the_cpu() {
        let chosen = kernel_instruction_set();
        eprintln!("CPU kernels: {}", chosen.name());
        assert_eq!(chosen, detected());
        // The AVX-512-only kernels are on exactly where the clones are AVX-512.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            crate::gelu::fused_add_gelu(&mut [0.5f32; 16], None, None),
            std::arch::is_x86_feature_detected!("avx512f")
        );
    }

    /// Under `tests/emulated_cpu.sh` the emulated CPU must select the path under test.
    #[test]
    fn the_expected_instruction_set_runs() {
        let Ok(expected) = std::env::var("MOBILESAM_EXPECT_INSTRUCTION_SET") else {
            return; // a native run: `the_dispatch_follows_the_cpu` covers it
        };
        assert_eq!(kernel_instruction_set().name(), expected);
    }
}
