//! The inputs of a 1x1 convolution over maps side by side, where one of them may be a
//! nearest-neighbour upsampling that is never made.
//!
//! In YOLOv8's and YOLO11's heads an Upsample is concatenated with a skip connection and
//! read only by the next C2f's first convolution, a 1x1 one. A 1x1 convolution commutes
//! with nearest upsampling (each output pixel is a function of its own input pixel), so
//! that map's share of the product is computed at its own size, 4 times fewer pixels,
//! and spread over the output's pixels: the upsampled map is neither copied nor
//! multiplied.

use super::map::Map;

/// One input map of a 1x1 convolution over maps side by side: the map itself, or its
/// nearest upsampling by `up` in both directions.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The map as it is.
    pub map: &'a Map,
    /// The upsampling factor (1: none).
    pub up: usize,
}

impl<'a> Part<'a> {
    /// The map as it is.
    pub fn plain(map: &'a Map) -> Self {
        Self { map, up: 1 }
    }

    /// The maps as they are.
    pub fn plain_all(maps: &[&'a Map]) -> Vec<Self> {
        maps.iter().map(|m| Self::plain(m)).collect()
    }

    /// Height and width of the map this part stands for.
    pub fn size(&self) -> (usize, usize) {
        (self.map.h * self.up, self.map.w * self.up)
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.map.c
    }
}

/// Adds (or, without `accumulate`, writes) rows `p0..` of the nearest upsampling by `up`
/// of `small` (`width` channels, the output's) into `rows`: output pixel `p` of a `w`
/// pixels wide map reads pixel `(y / up, x / up)` of `small`.
///
/// # Panics
/// When a row reaches past `small`.
pub fn spread_upsampled(
    small: &Map,
    up: usize,
    w: usize,
    p0: usize,
    rows: &mut [f32],
    accumulate: bool,
) {
    let width = small.c;
    for (r, dst) in rows.chunks_exact_mut(width).enumerate() {
        let p = p0 + r;
        let (y, x) = (p / w / up, p % w / up);
        let src = &small.data[(y * small.w + x) * width..][..width];
        if accumulate {
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        } else {
            dst.copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_reads_each_pixels_source_pixel() {
        let (h, w, c, up) = (2, 3, 4, 2);
        let mut small = Map::stale(h, w, c);
        for (i, v) in small.data.iter_mut().enumerate() {
            *v = i as f32;
        }
        let wide = w * up;
        // Rows 5.. of the upsampled map (a block that starts mid-row), written, then added.
        let (p0, n) = (5, 9);
        let mut rows = vec![f32::NAN; n * c];
        spread_upsampled(&small, up, wide, p0, &mut rows, false);
        spread_upsampled(&small, up, wide, p0, &mut rows, true);
        for (r, pixel) in rows.chunks_exact(c).enumerate() {
            let (y, x) = ((p0 + r) / wide, (p0 + r) % wide);
            for (ch, &v) in pixel.iter().enumerate() {
                let source = small.data[((y / up) * w + x / up) * c + ch];
                assert_eq!(v, 2.0 * source, "pixel ({y}, {x}) channel {ch}");
            }
        }
    }
}
