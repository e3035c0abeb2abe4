//! Percentiles of the latencies and times the benchmarks report. One definition for all of
//! them, so that a p99 means the same thing in every table of BENCHMARKS.md.

/// `v` in ascending order (total order: a NaN sorts last).
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The `q`-quantile of `sorted` (ascending), by nearest rank: the value at index
/// `round((n - 1) · q)`. `q = 0.5` is the median (the upper one of an even count), `q = 1`
/// the maximum. Panics on an empty slice; callers decide what an empty sample reports.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of an empty sample");
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
