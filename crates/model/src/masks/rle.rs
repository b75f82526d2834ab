//! Binary masks and their COCO run-length encoding: [`BinaryMask`] thresholds logits and
//! reports area, box and a pycocotools-compatible [`Rle`], byte for byte; the column-major
//! runs come from [`super::runs`].

use serde::{Deserialize, Serialize};

use super::runs;
use crate::error::{ModelError, Result};
use crate::image::DEFAULT_MAX_IMAGE_PIXELS;

/// Logits above this value are foreground (`SamPredictor`'s `mask_threshold`).
pub const MASK_THRESHOLD: f32 = 0.0;

/// A COCO compressed RLE, as pycocotools' `mask.encode` returns it: runs over the
/// column-major (Fortran-order) pixels, alternating background and foreground and starting
/// with a (possibly empty) background run, written with pycocotools' `rleToString` ASCII
/// encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]` of the mask.
    pub size: [u32; 2],
    /// The encoded run lengths.
    pub counts: String,
}

/// A binary mask, row-major, `height x width`; any non-zero value is foreground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryMask {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width` values, 0 or 1, row-major.
    pub data: Vec<u8>,
}

impl BinaryMask {
    /// Thresholds row-major logits at [`MASK_THRESHOLD`] (`> 0.0` is foreground). Missing
    /// values (fewer than `height * width` logits) are background; extra ones are ignored.
    pub fn from_logits(logits: &[f32], height: usize, width: usize) -> Self {
        let len = height.saturating_mul(width);
        let mut data: Vec<u8> = logits
            .iter()
            .take(len)
            .map(|&v| u8::from(v > MASK_THRESHOLD))
            .collect();
        data.resize(len, 0);
        Self {
            height,
            width,
            data,
        }
    }

    /// The number of foreground pixels.
    pub fn area(&self) -> u64 {
        runs::count_nonzero(&self.data)
    }

    /// The tight box `[x, y, width, height]` around the foreground, as pycocotools' `toBbox`
    /// gives it; all zeros for an empty mask.
    pub fn bbox(&self) -> [f32; 4] {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        if self.width > 0 {
            for (y, row) in self.data.chunks(self.width).take(self.height).enumerate() {
                let Some(first) = row.iter().position(|&v| v != 0) else {
                    continue;
                };
                let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
                x0 = x0.min(first);
                x1 = x1.max(last);
                y0 = y0.min(y);
                y1 = y;
            }
        }
        if x0 == usize::MAX {
            return [0.0; 4];
        }
        [
            x0 as f32,
            y0 as f32,
            (x1 - x0 + 1) as f32,
            (y1 - y0 + 1) as f32,
        ]
    }

    /// Run lengths over the column-major pixels, starting with a background run.
    fn runs(&self) -> Vec<u64> {
        let (h, w) = (self.height, self.width);
        if self.data.len() < h.saturating_mul(w) || h == 0 || w == 0 {
            return self.runs_slow();
        }
        runs::column_major_runs(&self.data, h, w)
    }

    /// [`BinaryMask::runs`] pixel by pixel, for masks with missing values.
    fn runs_slow(&self) -> Vec<u64> {
        runs::runs_by_pixel(self.height, self.width, |i| {
            self.data.get(i).is_some_and(|&v| v != 0)
        })
    }

    /// Encodes as a COCO compressed RLE, byte-identical to pycocotools' `mask.encode`.
    pub fn to_rle(&self) -> Rle {
        let size = [saturate_u32(self.height), saturate_u32(self.width)];
        Rle {
            size,
            counts: encode_counts(&self.runs()),
        }
    }

    /// Decodes a COCO compressed RLE of at most [`DEFAULT_MAX_IMAGE_PIXELS`] pixels; see
    /// [`BinaryMask::from_rle_with_limit`].
    pub fn from_rle(rle: &Rle) -> Result<Self> {
        Self::from_rle_with_limit(rle, DEFAULT_MAX_IMAGE_PIXELS)
    }

    /// Decodes a COCO compressed RLE. Characters outside pycocotools' alphabet, runs that
    /// are negative or too long, run totals other than `height * width`, and masks over
    /// `max_pixels` give [`ModelError::InvalidMask`]; nothing larger than the mask is
    /// allocated.
    pub fn from_rle_with_limit(rle: &Rle, max_pixels: u64) -> Result<Self> {
        let [h, w] = rle.size;
        let total = u64::from(h) * u64::from(w);
        if total > max_pixels {
            return Err(ModelError::InvalidMask(format!(
                "RLE size {h}x{w} is over the limit of {max_pixels} pixels"
            )));
        }
        let counts = decode_counts(&rle.counts, total)?;
        let (height, width) = (h as usize, w as usize);
        let mut data = vec![0u8; height * width];
        let mut pos = 0usize;
        for (i, &count) in counts.iter().enumerate() {
            let count = count as usize;
            if i % 2 == 1 {
                // Fill the run column segment by column segment.
                let (mut p, end) = (pos, pos + count);
                while p < end {
                    let (x, y) = (p / height, p % height);
                    let segment = (height - y).min(end - p);
                    for yy in y..y + segment {
                        data[yy * width + x] = 1;
                    }
                    p += segment;
                }
            }
            pos += count;
        }
        Ok(Self {
            height,
            width,
            data,
        })
    }

    /// Intersection over union of the foregrounds. Two empty masks of the same size give
    /// 1.0 (they are identical); masks of different sizes give 0.0.
    pub fn iou(&self, other: &Self) -> f64 {
        if self.height != other.height || self.width != other.width {
            return 0.0;
        }
        let (mut inter, mut union) = (0u64, 0u64);
        for (&a, &b) in self.data.iter().zip(&other.data) {
            let (a, b) = (a != 0, b != 0);
            inter += u64::from(a && b);
            union += u64::from(a || b);
        }
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        }
    }
}

fn saturate_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// pycocotools' `rleToString`: 5 bits per character (ASCII 48..=111), bit 0x20 set while
/// more characters follow, sign-extended from bit 0x10; from the fourth run on, the
/// difference to the run two back is written.
fn encode_counts(counts: &[u64]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(counts.len() * 2);
    for (i, &count) in counts.iter().enumerate() {
        let mut x = count as i64;
        if i > 2 {
            x -= counts[i - 2] as i64;
        }
        loop {
            let mut c = (x & 0x1f) as u8;
            x >>= 5;
            let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            out.push(c + 48);
            if !more {
                break;
            }
        }
    }
    // Every byte is in 48..=111: ASCII, so valid UTF-8.
    String::from_utf8(out).expect("RLE characters are ASCII")
}

/// pycocotools' `rleFrString`, checked: every run must be non-negative and the runs must
/// add up to exactly `total` pixels.
fn decode_counts(s: &str, total: u64) -> Result<Vec<u64>> {
    let invalid = |what: String| ModelError::InvalidMask(format!("malformed RLE counts: {what}"));
    let mut counts: Vec<u64> = Vec::new();
    let mut sum = 0u64;
    let mut bytes = s.bytes().enumerate();
    while let Some((start, _)) = bytes.clone().next() {
        let mut x = 0i64;
        let mut k = 0u32;
        loop {
            let Some((pos, b)) = bytes.next() else {
                return Err(invalid(format!("run at byte {start} is cut off")));
            };
            if !(48..=111).contains(&b) {
                return Err(invalid(format!(
                    "byte {b:#04x} at {pos} is not in '0'..='o'"
                )));
            }
            // 12 characters hold 60 bits, far more than any run of a valid mask.
            if k == 12 {
                return Err(invalid(format!("run at byte {start} is too long")));
            }
            let c = i64::from(b - 48);
            x |= (c & 0x1f) << (5 * k);
            k += 1;
            if c & 0x20 == 0 {
                if c & 0x10 != 0 {
                    x |= -1i64 << (5 * k);
                }
                break;
            }
        }
        if counts.len() > 2 {
            x = x.saturating_add(counts[counts.len() - 2] as i64);
        }
        let count = u64::try_from(x)
            .map_err(|_| invalid(format!("run {} is negative ({x})", counts.len())))?;
        sum = sum.saturating_add(count);
        if sum > total {
            return Err(invalid(format!("runs cover more than the {total} pixels")));
        }
        counts.push(count);
    }
    if sum != total {
        return Err(invalid(format!("runs cover {sum} of {total} pixels")));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::test_support::{load_json, lowbias32, num};
    use super::*;

    fn rle_of(v: &Value) -> Rle {
        serde_json::from_value(v.clone()).expect("rle")
    }

    #[test]
    fn fast_runs_match_pixel_walk() {
        for (h, w, seed) in [(1, 1, 1u32), (7, 5, 2), (40, 70, 3), (33, 1, 4), (1, 50, 5)] {
            let mut state = seed;
            let mut data = Vec::with_capacity(h * w);
            for i in 0..h * w {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                // Blobs: mostly copies of the pixel above, some noise.
                let above = if i >= w { data[i - w] } else { 0u8 };
                data.push(if state % 7 == 0 {
                    (state >> 8) as u8 % 3
                } else {
                    above
                });
            }
            let mask = BinaryMask {
                height: h,
                width: w,
                data,
            };
            assert_eq!(mask.runs(), mask.runs_slow(), "{h}x{w}");
        }
        let full = BinaryMask {
            height: 3,
            width: 4,
            data: vec![1; 12],
        };
        assert_eq!(full.runs(), vec![0, 12]);
    }

    fn mask_of(case: &Value) -> BinaryMask {
        let (h, w) = (num(&case["height"]), num(&case["width"]));
        let mut data = vec![0u8; h * w];
        if let Some(bits) = case.get("bits").and_then(Value::as_str) {
            data = bits.bytes().map(|b| b - b'0').collect();
        } else {
            for r in case["rects"].as_array().expect("rects") {
                let (x0, y0, x1, y1) = (num(&r[0]), num(&r[1]), num(&r[2]), num(&r[3]));
                for y in y0..y1 {
                    data[y * w + x0..y * w + x1].fill(1);
                }
            }
        }
        BinaryMask {
            height: h,
            width: w,
            data,
        }
    }

    #[test]
    fn rle_matches_pycocotools() {
        let cases = load_json("rle_cases.json");
        let cases = cases["cases"].as_array().expect("cases");
        assert!(cases.len() >= 15);
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let mask = mask_of(case);
            let want = rle_of(&case["rle"]);
            assert_eq!(mask.to_rle(), want, "{name}");
            assert_eq!(mask.area(), case["area"].as_u64().expect("area"), "{name}");
            let bbox: Vec<f32> = case["bbox"]
                .as_array()
                .expect("bbox")
                .iter()
                .map(|v| v.as_f64().expect("f") as f32)
                .collect();
            assert_eq!(mask.bbox().to_vec(), bbox, "{name}");
            assert_eq!(BinaryMask::from_rle(&want).expect("decode"), mask, "{name}");
        }
    }

    #[test]
    fn rle_round_trips() {
        for (h, w) in [(1, 1), (3, 5), (17, 13), (64, 1), (1, 64)] {
            for seed in 0..20u32 {
                let data = (0..h * w)
                    .map(|i| u8::from(lowbias32(i as u32 ^ (seed * 7919)).is_multiple_of(seed + 2)))
                    .collect();
                let mask = BinaryMask {
                    height: h,
                    width: w,
                    data,
                };
                let rle = mask.to_rle();
                assert_eq!(BinaryMask::from_rle(&rle).expect("decode"), mask);
            }
        }
        let empty = BinaryMask::from_logits(&[], 0, 0);
        assert_eq!(empty.to_rle().counts, "0");
        assert_eq!(
            BinaryMask::from_rle(&empty.to_rle()).expect("decode"),
            empty
        );
    }

    #[test]
    fn rle_garbage_is_an_error() {
        let rle = |h: u32, w: u32, counts: &str| Rle {
            size: [h, w],
            counts: counts.into(),
        };
        let good = BinaryMask::from_logits(&[1.0, -1.0, 1.0, 1.0, -1.0, 1.0], 2, 3).to_rle();
        assert!(BinaryMask::from_rle(&good).is_ok());
        for bad in [
            rle(2, 3, "not an rle!"),     // characters outside '0'..='o'
            rle(2, 3, "p"),               // just above the alphabet
            rle(2, 3, "\u{e9}"),          // non-ASCII
            rle(2, 3, "0"),               // too few pixels
            rle(2, 3, "7"),               // too many pixels
            rle(2, 3, "@"),               // a negative run
            rle(2, 3, "1"),               // too few pixels
            rle(2, 3, "0o"),              // cut off in the middle of a run
            rle(2, 3, "oooooooooooooo0"), // a run longer than 60 bits
            rle(2, 3, ""),
            rle(0, 3, "1"),
            rle(100_000, 100_000, "0"),
        ] {
            let err = BinaryMask::from_rle(&bad).expect_err(&bad.counts);
            assert!(matches!(err, ModelError::InvalidMask(_)), "{err}");
        }
        // Huge claimed sizes are refused before any allocation.
        let huge = BinaryMask::from_rle(&rle(u32::MAX, u32::MAX, "0"));
        assert!(matches!(huge, Err(ModelError::InvalidMask(m)) if m.contains("limit")));
        assert!(BinaryMask::from_rle_with_limit(&rle(3, 4, ";"), 11).is_err());
        assert!(BinaryMask::from_rle_with_limit(&rle(3, 4, "<"), 12).is_ok());
    }

    #[test]
    fn mask_measures() {
        let logits = [
            -1.0, -1.0, -1.0, -1.0, //
            -1.0, 0.5, 0.0, -1.0, //
            -1.0, 2.0, 3.0, 9.0, //
        ];
        let m = BinaryMask::from_logits(&logits, 3, 4);
        assert_eq!(m.area(), 4);
        assert_eq!(m.bbox(), [1.0, 1.0, 3.0, 2.0]);
        let empty = BinaryMask::from_logits(&[0.0; 12], 3, 4);
        assert_eq!(empty.area(), 0);
        assert_eq!(empty.bbox(), [0.0; 4]);
        assert_eq!(m.iou(&m), 1.0);
        assert_eq!(m.iou(&empty), 0.0);
        assert_eq!(empty.iou(&empty), 1.0);
        let shifted = BinaryMask::from_logits(&logits[1..], 3, 4);
        assert_eq!(shifted.data.len(), 12);
        // m = {(1,1),(2,1),(2,2),(2,3)}; shifted = {(1,0),(2,0),(2,1),(2,2)}: 2 / 6.
        assert!((m.iou(&shifted) - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.iou(&BinaryMask::from_logits(&logits, 4, 3)), 0.0);
    }
}
