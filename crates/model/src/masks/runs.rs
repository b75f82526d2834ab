//! Column-major run lengths of a row-major binary mask, eight pixels per 64-bit word: the
//! mask is transposed in 8 x 8 byte blocks (three rounds of masked shifts per block), then
//! the column-major bytes are scanned a word at a time, skipping words that hold no
//! change of value. Costs about one pass over the mask plus a few operations per run, so
//! fragmented masks (tens of thousands of runs) encode as fast as smooth ones.

/// Every byte of a word set to 1.
const ONES: u64 = 0x0101_0101_0101_0101;

/// Each byte of `word` as 1 where it is non-zero, 0 where it is zero.
#[inline(always)]
fn nonzero_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    (((word & LOW7) + LOW7) | word) >> 7 & ONES
}

/// Transposes the 8 x 8 byte matrix whose row `i` is `rows[i]` (byte `j` = column `j`,
/// little-endian): afterwards `rows[j]` holds column `j`.
#[inline(always)]
fn transpose8(rows: &mut [u64; 8]) {
    for (shift, mask, pairs) in [
        (
            8,
            0x00ff_00ff_00ff_00ff_u64,
            [(0, 1), (2, 3), (4, 5), (6, 7)],
        ),
        (16, 0x0000_ffff_0000_ffff, [(0, 2), (1, 3), (4, 6), (5, 7)]),
        (32, 0x0000_0000_ffff_ffff, [(0, 4), (1, 5), (2, 6), (3, 7)]),
    ] {
        for (a, b) in pairs {
            let t = ((rows[a] >> shift) ^ rows[b]) & mask;
            rows[b] ^= t;
            rows[a] ^= t << shift;
        }
    }
}

/// The `height x width` row-major mask `data` (non-zero = foreground) as column-major
/// bytes of 0 and 1, `width * height` of them.
fn column_major(data: &[u8], height: usize, width: usize) -> Vec<u8> {
    let mut out = vec![0u8; width * height];
    let (h8, w8) = (height / 8 * 8, width / 8 * 8);
    for y in (0..h8).step_by(8) {
        for x in (0..w8).step_by(8) {
            let mut block: [u64; 8] = std::array::from_fn(|i| {
                let at = (y + i) * width + x;
                let bytes: [u8; 8] = data[at..at + 8]
                    .try_into()
                    .expect("an 8-byte slice converts to [u8; 8]");
                nonzero_bytes(u64::from_le_bytes(bytes))
            });
            transpose8(&mut block);
            for (j, column) in block.iter().enumerate() {
                let at = (x + j) * height + y;
                out[at..at + 8].copy_from_slice(&column.to_le_bytes());
            }
        }
    }
    // The right and bottom edges that do not fill a block.
    for y in 0..height {
        let xs = if y < h8 { w8..width } else { 0..width };
        for x in xs {
            out[x * height + y] = u8::from(data[y * width + x] != 0);
        }
    }
    out
}

/// Lengths of the alternating runs of 0 and 1 in `bits` (bytes of 0 or 1), starting with
/// a run of 0 (empty if `bits` starts with 1).
fn alternating_runs(bits: &[u8]) -> Vec<u64> {
    let mut counts = Vec::new();
    let (mut current, mut start) = (0u8, 0usize);
    let mut words = bits.chunks_exact(8);
    let mut base = 0usize;
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8 bytes"));
        let mut from = 0u32; // bytes of this word already scanned
        loop {
            let pattern = u64::from(current) * ONES;
            let differ = (word ^ pattern) & (u64::MAX.checked_shl(8 * from).unwrap_or(0));
            if differ == 0 {
                break;
            }
            let at = (differ.trailing_zeros() / 8) as usize;
            counts.push((base + at - start) as u64);
            start = base + at;
            current ^= 1;
            from = at as u32 + 1;
        }
        base += 8;
    }
    for (i, &bit) in words.remainder().iter().enumerate() {
        if bit != current {
            counts.push((base + i - start) as u64);
            start = base + i;
            current ^= 1;
        }
    }
    counts.push((bits.len() - start) as u64);
    counts
}

/// Run lengths of the column-major pixels of a `height x width` row-major mask, starting
/// with a background run (pycocotools' order).
///
/// # Panics
/// When `data` holds fewer than `height * width` values.
pub fn column_major_runs(data: &[u8], height: usize, width: usize) -> Vec<u64> {
    assert!(data.len() >= height * width, "mask runs: short data");
    alternating_runs(&column_major(data, height, width))
}

/// Column-major run lengths, pixel by pixel: `foreground(i)` tells whether row-major pixel
/// `i` of a `height x width` mask is set. The slow reference for masks with missing
/// values, and for the tests of [`column_major_runs`].
pub(crate) fn runs_by_pixel(
    height: usize,
    width: usize,
    foreground: impl Fn(usize) -> bool,
) -> Vec<u64> {
    let mut counts = Vec::new();
    let (mut current, mut run) = (false, 0u64);
    for x in 0..width {
        for y in 0..height {
            let value = foreground(y * width + x);
            if value != current {
                counts.push(run);
                run = 0;
                current = value;
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

/// The number of non-zero values in `data`.
pub fn count_nonzero(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    let mut total = 0u64;
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8 bytes"));
        total += u64::from(nonzero_bytes(word).count_ones());
    }
    total + words.remainder().iter().filter(|&&v| v != 0).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixel-by-pixel column-major runs.
    fn naive_runs(data: &[u8], h: usize, w: usize) -> Vec<u64> {
        runs_by_pixel(h, w, |i| data[i] != 0)
    }

    fn pseudo_random_mask(h: usize, w: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..h * w)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                // Mostly 0 and 1, some other non-zero values; long runs and single pixels.
                match (state >> 16) % 11 {
                    0..=4 => 0,
                    5..=8 => 1,
                    9 => 255,
                    _ => 128,
                }
            })
            .collect()
    }

    #[test]
    fn runs_match_pixel_walk() {
        for (h, w, seed) in [
            (1, 1, 1),
            (8, 8, 2),
            (7, 5, 3),
            (16, 24, 4),
            (17, 23, 5),
            (720, 1280, 6),
            (33, 1, 7),
            (1, 50, 8),
        ] {
            let data = pseudo_random_mask(h, w, seed);
            assert_eq!(
                column_major_runs(&data, h, w),
                naive_runs(&data, h, w),
                "{h}x{w}"
            );
            let smooth: Vec<u8> = (0..h * w)
                .map(|i| u8::from((i / w + i % w) % 9 < 4))
                .collect();
            assert_eq!(
                column_major_runs(&smooth, h, w),
                naive_runs(&smooth, h, w),
                "{h}x{w} smooth"
            );
        }
        assert_eq!(column_major_runs(&[1; 12], 3, 4), vec![0, 12]);
        assert_eq!(column_major_runs(&[0; 12], 3, 4), vec![12]);
    }

    #[test]
    fn counts_non_zero_values() {
        for len in [0, 1, 7, 8, 9, 64, 1001] {
            let data = pseudo_random_mask(1, len, len as u32);
            let want = data.iter().filter(|&&v| v != 0).count() as u64;
            assert_eq!(count_nonzero(&data), want, "{len}");
        }
    }
}
