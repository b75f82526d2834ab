//! How many CPU threads the model's kernels use.

/// Threads in the pool that runs the CPU kernels (rayon's global pool, which candle's
/// matrix products also use). Set with `RAYON_NUM_THREADS`; default: one per logical CPU.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
