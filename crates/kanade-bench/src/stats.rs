//! Summaries of measured runs: latency percentiles and the median run that a benchmark reports.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: i64,
    pub p99: i64,
    pub max: i64,
}

/// p50, p99 and max of `values` (nearest rank); all zero when there are none.
pub fn percentiles(mut values: Vec<i64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles { p50: at(0.5), p99: at(0.99), max: values[values.len() - 1] }
}

/// The middle of `items` ordered by `key` (the upper middle of an even count): the run a benchmark reports, with
/// whatever else was measured in it. Panics on no items: every benchmark measures at least one run.
pub fn median_by_key<T, K: Ord>(mut items: Vec<T>, key: impl FnMut(&T) -> K) -> T {
    items.sort_by_key(key);
    let mid = items.len() / 2;
    items.swap_remove(mid)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn percentiles_of_nothing_are_zero() {
        let p = percentiles(Vec::new());
        assert_eq!((p.p50, p.p99, p.max), (0, 0, 0));
    }

    #[test]
    fn percentiles_take_the_nearest_rank_of_the_sorted_values() {
        let p = percentiles((1..=100).rev().collect());
        assert_eq!((p.p50, p.p99, p.max), (51, 99, 100));
        let one = percentiles(vec![7]);
        assert_eq!((one.p50, one.p99, one.max), (7, 7, 7));
    }

    #[test]
    fn the_median_run_keeps_what_was_measured_with_it() {
        let runs =
            vec![(Duration::from_millis(30), "c"), (Duration::from_millis(10), "a"), (Duration::from_millis(20), "b")];
        assert_eq!(median_by_key(runs, |run| run.0), (Duration::from_millis(20), "b"));
    }

    #[test]
    fn an_even_count_reports_the_upper_middle() {
        assert_eq!(median_by_key(vec![4, 1, 3, 2], |v| *v), 3);
    }
}
