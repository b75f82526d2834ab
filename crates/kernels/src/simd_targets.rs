//! The one list of instruction sets the element-wise kernels are compiled for.

/// Compiles each wrapped function for AVX-512 (F, VL, BW, DQ) with AVX2+FMA, for AVX2+FMA
/// and for NEON, and picks the clone for the running CPU at run time (`multiversion`);
/// other CPUs run the portable build. [`dispatch::kernel_instruction_set`](crate::dispatch::kernel_instruction_set)
/// names the same list and reports the clone chosen. The expansion names `::multiversion`,
/// so a crate that uses the macro depends on `multiversion` too.
#[macro_export]
macro_rules! multiversioned {
    ($($item:item)*) => {
        $(
            #[::multiversion::multiversion(targets(
                "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
                "x86_64+avx2+fma",
                "aarch64+neon"
            ))]
            $item
        )*
    };
}
