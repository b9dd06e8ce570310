//! Summaries of repeated measurements: the median with the min–max spread.

/// The median of several runs and their range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// The spread of `values`, ignoring non-finite ones; `None` when none is left.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            n,
        })
    }
}

/// The ratio of two medians with a conservative range: the extremes of each spread
/// combined (`min/max` to `max/min`), so a reader sees how much noise the ratio carries.
pub fn ratio(numerator: &Spread, denominator: &Spread) -> Option<Spread> {
    if denominator.median == 0.0 || denominator.min <= 0.0 || denominator.max <= 0.0 {
        return None;
    }
    Some(Spread {
        median: numerator.median / denominator.median,
        min: numerator.min / denominator.max,
        max: numerator.max / denominator.min,
        n: numerator.n.min(denominator.n),
    })
}

/// The difference of two medians with its range (`min − max` to `max − min`).
pub fn difference(minuend: &Spread, subtrahend: &Spread) -> Spread {
    Spread {
        median: minuend.median - subtrahend.median,
        min: minuend.min - subtrahend.max,
        max: minuend.max - subtrahend.min,
        n: minuend.n.min(subtrahend.n),
    }
}

/// How two variants measured in the same rounds are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairing {
    /// `a − b` in each round.
    Difference,
    /// `a ÷ b` in each round.
    Ratio,
}

/// Two series compared round by round: `a` and `b` are `(round, value)`; only rounds in
/// both count. The median of the per-round differences (or ratios) and their range. The
/// variants of one round run back to back, so a slow spell of the host mostly falls on
/// both sides of a pair and cancels, where the difference of two medians taken from
/// different rounds keeps it.
pub fn paired(a: &[(u64, f64)], b: &[(u64, f64)], pairing: Pairing) -> Option<Spread> {
    let values: Vec<f64> = a
        .iter()
        .filter_map(|&(round, x)| {
            let &(_, y) = b.iter().find(|&&(r, _)| r == round)?;
            match pairing {
                Pairing::Difference => Some(x - y),
                Pairing::Ratio => (y > 0.0).then(|| x / y),
            }
        })
        .collect();
    Spread::of(&values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Spread::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max, odd.n), (3.0, 1.0, 5.0, 3));
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
    }

    #[test]
    fn non_finite_values_are_ignored_and_empty_is_none() {
        assert_eq!(Spread::of(&[f64::NAN, 2.0]).unwrap().n, 1);
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::INFINITY]).is_none());
    }

    #[test]
    fn ratio_range_combines_the_extremes() {
        let a = Spread::of(&[90.0, 100.0, 110.0]).unwrap();
        let b = Spread::of(&[180.0, 200.0, 250.0]).unwrap();
        let r = ratio(&a, &b).unwrap();
        assert_eq!(r.median, 0.5);
        assert_eq!(r.min, 90.0 / 250.0);
        assert_eq!(r.max, 110.0 / 180.0);
        assert!(ratio(&a, &Spread::of(&[0.0]).unwrap()).is_none());
    }

    #[test]
    fn difference_range_combines_the_extremes() {
        let a = Spread::of(&[10.0, 12.0]).unwrap();
        let b = Spread::of(&[4.0, 5.0]).unwrap();
        let d = difference(&a, &b);
        assert_eq!((d.median, d.min, d.max), (6.5, 5.0, 8.0));
    }

    #[test]
    fn pairs_are_taken_round_by_round() {
        // A slow second round doubles both: paired, it cancels.
        let a = [(1, 12.0), (2, 24.0), (3, 13.0), (5, 99.0)];
        let b = [(1, 10.0), (2, 20.0), (3, 10.0), (4, 1.0)];
        let d = paired(&a, &b, Pairing::Difference).unwrap();
        assert_eq!((d.median, d.min, d.max, d.n), (3.0, 2.0, 4.0, 3));
        let r = paired(&a, &b, Pairing::Ratio).unwrap();
        assert_eq!((r.median, r.min, r.max), (1.2, 1.2, 1.3));
        assert!(paired(&a, &[(4, 1.0)], Pairing::Difference).is_none());
        assert!(paired(&[(1, 1.0)], &[(1, 0.0)], Pairing::Ratio).is_none());
    }
}
