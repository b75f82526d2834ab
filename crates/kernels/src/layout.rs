//! Channel-planar <-> channels-last layout changes, in parallel blocks.

use rayon::prelude::*;

/// Channel planes -> a new channels-last buffer.
pub fn to_channels_last(planar: &[f32], channels: usize) -> Vec<f32> {
    let mut out = vec![0.0; planar.len()];
    planar_to_interleaved(planar, &mut out, channels);
    out
}

/// Channels-last pixels -> a new buffer of channel planes.
pub fn to_planar(interleaved: &[f32], channels: usize) -> Vec<f32> {
    let mut out = vec![0.0; interleaved.len()];
    interleaved_to_planar(interleaved, &mut out, channels);
    out
}

/// Pixels per task of [`planar_to_interleaved`].
const LAYOUT_BLOCK_PIXELS: usize = 1 << 15;

/// Channel planes -> channels-last pixels.
pub fn planar_to_interleaved(src: &[f32], dst: &mut [f32], channels: usize) {
    let plane = src.len() / channels;
    let block = LAYOUT_BLOCK_PIXELS;
    dst.par_chunks_mut(block * channels)
        .enumerate()
        .for_each(|(b, pixels)| {
            crate::yield_point::reached();
            for (i, px) in pixels.chunks_exact_mut(channels).enumerate() {
                let p = b * block + i;
                for (c, v) in px.iter_mut().enumerate() {
                    *v = src[c * plane + p];
                }
            }
        });
}

/// Channels-last pixels -> channel planes.
pub fn interleaved_to_planar(src: &[f32], dst: &mut [f32], channels: usize) {
    let plane = src.len() / channels;
    // A task per group of 16 planes reads one 64-byte run of each pixel's channels.
    let group = 16.min(channels.max(1));
    dst.par_chunks_mut(group * plane)
        .enumerate()
        .for_each(|(g, planes)| {
            crate::yield_point::reached();
            let c0 = g * group;
            for (p, px) in src.chunks_exact(channels).enumerate() {
                for (c, v) in px[c0..].iter().take(planes.len() / plane).enumerate() {
                    planes[c * plane + p] = *v;
                }
            }
        });
}
