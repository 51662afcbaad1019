//! A small HDR-like log-linear latency histogram.
//!
//! Values (nanoseconds) below 128 get their own bucket; above that every power of two is split
//! into 128 linear sub-buckets, so the relative error of a reported quantile is below 1%.
//! Recording is an index computation and an increment: no allocation, no floating point.

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS; // 128 sub-buckets per power of two
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = e - SUB_BITS;
        let m = v >> shift; // in [SUB, 2*SUB)
        ((shift as u64 + 1) * SUB + (m - SUB)) as usize
    }

    /// Lower bound and width of bucket `i`.
    fn bounds(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < SUB {
            return (i, 1);
        }
        let shift = i / SUB - 1;
        let m = SUB + i % SUB;
        (m << shift, 1u64 << shift)
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.sum += v as u128;
        if v > self.max {
            self.max = v;
        }
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Value at quantile `q` in [0,1] (bucket midpoint, capped at the recorded maximum).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut cum = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                let (lo, w) = Self::bounds(i);
                return (lo + w / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_bounds_roundtrip() {
        for v in (0..100_000u64).chain([1 << 20, (1 << 40) + 12345, u64::MAX / 3]) {
            let i = Histogram::index(v);
            let (lo, w) = Histogram::bounds(i);
            assert!(lo <= v && v - lo < w, "v={v} i={i} lo={lo} w={w}");
            assert!(w == 1 || (w as f64) / (lo as f64) <= 1.0 / 128.0 + 1e-12);
        }
        assert!(Histogram::index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.01, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.01, "{p99}");
        assert_eq!(h.count(), 10_000);
    }
}
