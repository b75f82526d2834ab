//! The detector's channels-last feature maps, whose buffers are reused between maps of
//! the same size on a thread.

use std::cell::RefCell;
use std::collections::VecDeque;

use mobilesam_kernels::profile::step;
use rayon::prelude::*;

thread_local! {
    /// The buffers of this thread's dropped maps, oldest first, for its next maps of the
    /// same sizes: a forward pass makes and drops maps of a few dozen sizes, the same ones
    /// image after image, and a reused buffer is neither zeroed nor faulted in again.
    static SPARE_BUFFERS: RefCell<VecDeque<Vec<f32>>> = const { RefCell::new(VecDeque::new()) };
}

/// At most this many spare buffers are kept per thread (more than the sizes of one pass
/// of a detection network); the oldest go first.
const MAX_SPARE_BUFFERS: usize = 48;

/// Pixels per parallel task of the channel copies.
const COPY_PIXELS: usize = 1024;

/// A channels-last feature map: `data[(y * w + x) * c + channel]`. Its buffer goes back
/// to the thread's spares when it is dropped.
#[derive(Debug, Clone)]
pub struct Map {
    /// The values.
    pub data: Vec<f32>,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Drop for Map {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        SPARE_BUFFERS.with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() == MAX_SPARE_BUFFERS {
                    spare.pop_front();
                }
                spare.push_back(data);
            }
        });
    }
}

impl Map {
    /// An `h x w x c` map whose values are left over from an earlier map of the same size
    /// when there is one (zeros otherwise): every caller overwrites all of them.
    pub fn stale(h: usize, w: usize, c: usize) -> Self {
        let len = h * w * c;
        let reused = SPARE_BUFFERS.with(|spare| {
            let mut spare = spare.try_borrow_mut().ok()?;
            let at = spare.iter().rposition(|b| b.len() == len)?;
            spare.remove(at)
        });
        Self {
            data: reused.unwrap_or_else(|| vec![0.0; len]),
            h,
            w,
            c,
        }
    }

    /// Channels `from..from + count` as a map of their own.
    pub(super) fn channels(&self, from: usize, count: usize) -> Map {
        step("detector copies", || self.copy_channels(from, count))
    }

    fn copy_channels(&self, from: usize, count: usize) -> Map {
        let mut out = Map::stale(self.h, self.w, count);
        out.data
            .par_chunks_mut(COPY_PIXELS * count)
            .zip(self.data.par_chunks(COPY_PIXELS * self.c))
            .for_each(|(dst, src)| {
                for (d, s) in dst.chunks_exact_mut(count).zip(src.chunks_exact(self.c)) {
                    d.copy_from_slice(&s[from..from + count]);
                }
            });
        out
    }

    /// The maps side by side along channels.
    pub(super) fn concat(parts: &[&Map]) -> Map {
        step("detector copies", || Self::copy_side_by_side(parts))
    }

    fn copy_side_by_side(parts: &[&Map]) -> Map {
        let (h, w) = (parts[0].h, parts[0].w);
        let c: usize = parts.iter().map(|p| p.c).sum();
        let mut out = Map::stale(h, w, c);
        out.data
            .par_chunks_mut(COPY_PIXELS * c)
            .enumerate()
            .for_each(|(block, dst)| {
                let p0 = block * COPY_PIXELS;
                for (i, pixel) in dst.chunks_exact_mut(c).enumerate() {
                    let p = p0 + i;
                    let mut at = 0;
                    for part in parts {
                        pixel[at..at + part.c]
                            .copy_from_slice(&part.data[p * part.c..(p + 1) * part.c]);
                        at += part.c;
                    }
                }
            });
        out
    }

    pub(super) fn add(mut self, other: &Map) -> Map {
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a += b;
        }
        self
    }
}
