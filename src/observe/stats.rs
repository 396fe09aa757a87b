//! Statistics for judging an experiment against its control: the
//! Mann-Whitney U test (two-sided), exact for small samples without ties and
//! with the normal approximation (tie- and continuity-corrected) otherwise.
//! It asks whether one sample tends to have larger values than the other
//! without assuming a distribution, which suits latencies and error counts.

/// Samples up to this size (each) without ties get the exact distribution.
const EXACT_MAX: usize = 25;

/// The mean of `xs`, if any.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The result of a Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample.
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether the exact distribution was used.
    pub exact: bool,
}

/// Tests whether `a` and `b` come from the same distribution. `None` when a
/// sample is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Average ranks over ties; remember tie group sizes for the variance.
    let n = all.len();
    let mut rank_sum_a = 0.0;
    let mut ties: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for item in &all[i..=j] {
            if item.1 {
                rank_sum_a += avg;
            }
        }
        if j > i {
            ties.push(j - i + 1);
        }
        i = j + 1;
    }
    let u = rank_sum_a - (n1 * (n1 + 1)) as f64 / 2.0;
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    if ties.is_empty() && n1 <= EXACT_MAX && n2 <= EXACT_MAX {
        let dist = u_distribution(n1, n2);
        let total: f64 = dist.iter().sum();
        let u_int = u.round() as usize;
        let le: f64 = dist[..=u_int].iter().sum::<f64>() / total;
        let ge: f64 = dist[u_int..].iter().sum::<f64>() / total;
        return Some(MannWhitney {
            u,
            p_value: (2.0 * le.min(ge)).min(1.0),
            exact: true,
        });
    }
    let mu = n1f * n2f / 2.0;
    let nf = n as f64;
    let tie_term: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum::<f64>() / (nf * (nf - 1.0));
    let sigma = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term)).sqrt();
    if sigma == 0.0 {
        return Some(MannWhitney {
            u,
            p_value: 1.0,
            exact: false,
        });
    }
    let z = ((u - mu).abs() - 0.5).max(0.0) / sigma;
    Some(MannWhitney {
        u,
        p_value: erfc(z / std::f64::consts::SQRT_2).min(1.0),
        exact: false,
    })
}

/// Counts of arrangements of `n1` + `n2` distinct values by U (index = U).
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    // f[i][j] is the distribution for sizes (i, j); built up row by row.
    let max = n1 * n2;
    let mut prev: Vec<Vec<f64>> = (0..=n2).map(|_| one_at_zero(max)).collect(); // i = 0
    for _ in 1..=n1 {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n2 + 1);
        cur.push(one_at_zero(max)); // j = 0
        for j in 1..=n2 {
            // The largest value is from the first sample (adds j to U) or the second.
            let mut d = vec![0.0; max + 1];
            for u in 0..=max {
                let from_a = if u >= j { prev[j][u - j] } else { 0.0 };
                d[u] = from_a + cur[j - 1][u];
            }
            cur.push(d);
        }
        prev = cur;
    }
    prev.swap_remove(n2)
}

fn one_at_zero(max: usize) -> Vec<f64> {
    let mut v = vec![0.0; max + 1];
    v[0] = 1.0;
    v
}

/// The complementary error function (Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fully_separated_small_samples_use_the_exact_distribution() {
        let r = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert!(r.exact);
        assert_eq!(r.u, 0.0);
        // 2 arrangements out of C(10,5) = 252 are as extreme, two-sided.
        assert!((r.p_value - 2.0 / 252.0).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn interleaved_samples_are_not_significant() {
        let r = mann_whitney(&[1.0, 3.0, 5.0, 7.0, 9.0], &[2.0, 4.0, 6.0, 8.0, 10.0]).unwrap();
        assert!(r.p_value > 0.5, "{r:?}");
        let same = mann_whitney(&[5.0; 8], &[5.0; 8]).unwrap();
        assert_eq!(same.p_value, 1.0);
    }

    #[test]
    fn ties_use_the_corrected_normal_approximation() {
        let a = [10.0, 10.0, 11.0, 12.0, 12.0, 13.0, 14.0, 14.0, 15.0, 15.0];
        let b = [20.0, 21.0, 21.0, 22.0, 23.0, 23.0, 24.0, 25.0, 26.0, 26.0];
        let r = mann_whitney(&a, &b).unwrap();
        assert!(!r.exact);
        // Complete separation of 10 and 10: z about 3.7, p about 0.0002.
        assert!(r.p_value < 0.001 && r.p_value > 0.00001, "{r:?}");
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
    }

    #[test]
    fn empty_samples_have_no_test() {
        assert!(mann_whitney(&[], &[1.0]).is_none());
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 3.0]), Some(2.0));
    }
}
