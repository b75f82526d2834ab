//! Latency samples and their percentiles.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// Percentiles by the nearest-rank method (the smallest sample with at least `p` percent
/// of the samples at or below it); `None` without samples.
pub fn percentiles(samples: &[Duration]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        ms[index.clamp(1, ms.len()) - 1]
    };
    Some(Percentiles {
        count: ms.len(),
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: ms[ms.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = percentiles(&samples).expect("samples");
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        let one = percentiles(&[Duration::from_millis(7)]).expect("one");
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert!(percentiles(&[]).is_none());
    }
}
