//! Memory reuse: a per-thread scratch slice for work inside one task, and a pool of
//! activation buffers for one forward pass (so the large ones are faulted in once, not per
//! layer).

use std::cell::RefCell;
use std::sync::Mutex;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a slice of `len` values owned by the calling thread; the contents are left
/// over from earlier use. A nested call gets a fresh allocation instead.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Activation buffers handed out and given back during a forward pass. A buffer from
/// [`BufferPool::take`] holds stale values: every user overwrites it completely.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<f32>>,
}

impl BufferPool {
    /// A buffer of exactly `len` values (contents unspecified).
    pub fn take(&mut self, len: usize) -> Vec<f32> {
        // The smallest free buffer that fits, else the largest one (grown).
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .or_else(|| {
                self.free
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, b)| b.capacity())
            })
            .map(|(i, _)| i);
        let mut buf = match fit {
            Some(i) => self.free.swap_remove(i),
            None => Vec::new(),
        };
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0.0);
        }
        buf
    }

    /// Returns a buffer for reuse.
    pub fn give(&mut self, buf: Vec<f32>) {
        self.free.push(buf);
    }

    /// Bytes held by free buffers.
    pub fn bytes(&self) -> usize {
        self.free.iter().map(|b| b.capacity() * 4).sum()
    }
}

/// Pools kept between forward passes, one per concurrent pass.
#[derive(Debug, Default)]
pub struct PoolCache {
    pools: Mutex<Vec<BufferPool>>,
}

impl PoolCache {
    /// A pool for one pass: a kept one if any is free.
    pub fn checkout(&self) -> BufferPool {
        self.pools
            .lock()
            .map(|mut p| p.pop().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Frees every kept pool (the next pass allocates again).
    pub fn clear(&self) {
        if let Ok(mut p) = self.pools.lock() {
            p.clear();
        }
    }

    /// Bytes held by the kept pools.
    pub fn bytes(&self) -> usize {
        self.pools
            .lock()
            .map(|p| p.iter().map(BufferPool::bytes).sum())
            .unwrap_or(0)
    }

    /// Keeps `pool` for the next pass.
    pub fn checkin(&self, pool: BufferPool) {
        if let Ok(mut p) = self.pools.lock() {
            p.push(pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_buffers() {
        let mut pool = BufferPool::default();
        let a = pool.take(100);
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(50);
        assert_eq!(b.len(), 50);
        assert_eq!(b.as_ptr(), ptr);
        let c = pool.take(10);
        assert_eq!(c.len(), 10);
        pool.give(b);
        pool.give(c);
        assert!(pool.bytes() >= 440);
    }

    #[test]
    fn scratch_nests() {
        with_scratch(8, |outer| {
            outer.fill(1.0);
            with_scratch(4, |inner| inner.fill(2.0));
            assert!(outer.iter().all(|&v| v == 1.0));
        });
    }
}
