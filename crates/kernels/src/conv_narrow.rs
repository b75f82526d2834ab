//! The direct path of a dense 3x3 convolution (zero padding 1, stride 1 or 2) between
//! narrow layers: 8 or 16 channels in and out (YOLO11n's first bottleneck, 16 -> 8 ->
//! 16). There a matrix product of im2col patches has too few output channels for the
//! product's register tiles (8 or 16 of the 48 rows they are built for), so each output
//! pixel's channels are instead accumulated in registers, several pixels at a time,
//! straight from the input rows: no patch is gathered or stored. (With 32 output
//! channels the accumulators no longer fit in registers, and im2col is 4 times faster.)

/// Output pixels computed together: their accumulators are independent chains of FMAs,
/// and each weight row loaded serves all of them.
const PIXELS: usize = 8;

/// Whether the direct path handles `in_ch -> out_ch`.
pub fn supports(in_ch: usize, out_ch: usize) -> bool {
    matches!((in_ch, out_ch), (8 | 16, 8 | 16))
}

/// One output row, without bias: `inputs` are the three input rows of the kernel (`None`
/// outside the map), `w` pixels of `in_ch` values each; `weight` is `(9 * in_ch, out_ch)`,
/// row `(ky * 3 + kx) * in_ch + ci`; `row` holds `out_ch` values per output pixel.
///
/// # Panics
/// When the channels are not [`supports`]ed or the lengths disagree with them.
pub fn row(
    inputs: [Option<&[f32]>; 3],
    w: usize,
    weight: &[f32],
    (in_ch, out_ch): (usize, usize),
    stride: usize,
    row: &mut [f32],
) {
    assert!(
        supports(in_ch, out_ch)
            && weight.len() == 9 * in_ch * out_ch
            && inputs.iter().flatten().all(|r| r.len() == w * in_ch)
            && row.len().is_multiple_of(out_ch),
        "narrow conv3x3: shapes"
    );
    match (in_ch, out_ch) {
        (8, 8) => row_8_8(inputs, w, weight, stride, row),
        (8, _) => row_8_16(inputs, w, weight, stride, row),
        (_, 8) => row_16_8(inputs, w, weight, stride, row),
        _ => row_16_16(inputs, w, weight, stride, row),
    }
}

multiversioned! {
    fn row_8_8(inputs: [Option<&[f32]>; 3], w: usize, weight: &[f32], stride: usize, row: &mut [f32]) {
        direct_row::<8, 8>(inputs, w, weight, stride, row)
    }
    fn row_8_16(inputs: [Option<&[f32]>; 3], w: usize, weight: &[f32], stride: usize, row: &mut [f32]) {
        direct_row::<8, 16>(inputs, w, weight, stride, row)
    }
    fn row_16_8(inputs: [Option<&[f32]>; 3], w: usize, weight: &[f32], stride: usize, row: &mut [f32]) {
        direct_row::<16, 8>(inputs, w, weight, stride, row)
    }
    fn row_16_16(inputs: [Option<&[f32]>; 3], w: usize, weight: &[f32], stride: usize, row: &mut [f32]) {
        direct_row::<16, 16>(inputs, w, weight, stride, row)
    }
}

/// [`row`] for `CI` channels in and `CO` out, inlined into each instruction set's copy.
#[inline(always)]
fn direct_row<const CI: usize, const CO: usize>(
    inputs: [Option<&[f32]>; 3],
    w: usize,
    weight: &[f32],
    stride: usize,
    row: &mut [f32],
) {
    let zeros = [0.0f32; CI];
    let wo = row.len() / CO;
    let mut ox = 0;
    while ox < wo {
        let count = PIXELS.min(wo - ox);
        // Fixed sizes throughout: the loops unroll into vector FMAs on registers.
        let mut acc = [[0.0f32; CO]; PIXELS];
        for (ky, input) in inputs.iter().enumerate() {
            let Some(input) = input else {
                continue;
            };
            for kx in 0..3 {
                // Pixels past the row's end repeat its last one; their sums are dropped.
                let sources: [&[f32; CI]; PIXELS] = std::array::from_fn(|p| {
                    let x = (ox + p.min(count - 1)) * stride + kx;
                    x.checked_sub(1)
                        .filter(|&ix| ix < w)
                        .and_then(|ix| input[ix * CI..(ix + 1) * CI].try_into().ok())
                        .unwrap_or(&zeros)
                });
                let tap = ky * 3 + kx;
                let Some(taps) = weight.get(tap * CI * CO..(tap + 1) * CI * CO) else {
                    continue;
                };
                for i in 0..CI {
                    let weights: &[f32; CO] = match taps[i * CO..(i + 1) * CO].try_into() {
                        Ok(weights) => weights,
                        Err(_) => continue,
                    };
                    let values: [f32; PIXELS] = std::array::from_fn(|p| sources[p][i]);
                    for p in 0..PIXELS {
                        for o in 0..CO {
                            acc[p][o] = values[p].mul_add(weights[o], acc[p][o]);
                        }
                    }
                }
            }
        }
        for (pixel, a) in row[ox * CO..(ox + count) * CO]
            .chunks_exact_mut(CO)
            .zip(&acc)
        {
            pixel.copy_from_slice(a);
        }
        ox += count;
    }
}
