//! Fisher's exact test on a 2x2 table, two-sided as scipy.stats.fisher_exact: the p-value sums the hypergeometric
//! probabilities of every table with the same margins that is no more likely than the observed one (with scipy's
//! relative tolerance 1e-7 for ties). Odds ratio = the sample odds ratio (a d) / (b c) (inf or NaN on zeros).
//!
//! Key decision: log-factorials from an exact cumulative table up to 1024 and Stirling's series above (error
//! < 1e-16 relative there), so tables with millions of variants cost one pass over the support and no big tables.

/// ln(n!).
pub fn ln_factorial(n: u64) -> f64 {
    const SMALL: usize = 1024;
    thread_local! {
        static TABLE: Vec<f64> = {
            let mut t = vec![0.0f64; SMALL];
            for i in 1..SMALL {
                t[i] = t[i - 1] + (i as f64).ln();
            }
            t
        };
    }
    if (n as usize) < SMALL {
        return TABLE.with(|t| t[n as usize]);
    }
    // Stirling: ln n! = n ln n - n + ln(2 pi n)/2 + 1/(12n) - 1/(360n^3) + 1/(1260n^5)
    let x = n as f64;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x.powi(3))
        + 1.0 / (1260.0 * x.powi(5))
}

/// Result of one test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fisher {
    pub odds_ratio: f64,
    pub p_value: f64,
}

/// Two-sided Fisher exact test of [[a, b], [c, d]].
pub fn fisher_exact(a: u64, b: u64, c: u64, d: u64) -> Fisher {
    let odds_ratio = if b == 0 || c == 0 {
        if a == 0 || d == 0 {
            f64::NAN
        } else {
            f64::INFINITY
        }
    } else {
        (a as f64 * d as f64) / (b as f64 * c as f64)
    };
    let (r1, r2, c1) = (a + b, c + d, a + c);
    let n = r1 + r2;
    if r1 == 0 || r2 == 0 || c1 == 0 || c1 == n {
        return Fisher { odds_ratio, p_value: 1.0 };
    }
    // ln P(X = x) for the top-left cell x, margins fixed.
    let base = ln_factorial(r1) + ln_factorial(r2) + ln_factorial(c1) + ln_factorial(n - c1) - ln_factorial(n);
    let lp = |x: u64| base - ln_factorial(x) - ln_factorial(r1 - x) - ln_factorial(c1 - x) - ln_factorial(r2 + x - c1);
    let lo = c1.saturating_sub(r2);
    let hi = r1.min(c1);
    let obs = lp(a);
    // scipy: tables with p <= p_obs * (1 + 1e-7) count.
    let cut = obs + (1.0f64 + 1e-7).ln();
    let mut p = 0.0f64;
    for x in lo..=hi {
        let l = lp(x);
        if l <= cut {
            p += (l - obs).exp();
        }
    }
    Fisher { odds_ratio, p_value: (p * obs.exp()).min(1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_factorial_is_exact_across_the_switch() {
        assert_eq!(ln_factorial(0), 0.0);
        assert!((ln_factorial(5) - 120f64.ln()).abs() < 1e-14);
        // Sum of logs at 2000 vs Stirling.
        let direct: f64 = (1..=2000u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(2000) - direct).abs() / direct < 1e-13, "{} {}", ln_factorial(2000), direct);
    }

    /// Known values: Fisher's tea-tasting table (p = 34/70 = 0.4857142857), and scipy.stats.fisher_exact values
    /// computed by hand from the hypergeometric sums (comments give the exact fractions).
    #[test]
    fn known_p_values() {
        let f = fisher_exact(3, 1, 1, 3);
        assert!((f.p_value - 34.0 / 70.0).abs() < 1e-12, "{f:?}");
        assert_eq!(f.odds_ratio, 9.0);
        // [[8, 2], [1, 5]] (the scipy documentation's example, p = 0.03496503...): rows 10 and 6, first column 9;
        // P(x) = C(10, x) C(6, 9 - x) / C(16, 9) with C(16, 9) = 11440 and numerators x = 3..9: 120, 1260, 3780,
        // 4200, 1800, 270, 10. At most as likely as x = 8 (270): x = 3, 8, 9 -> p = 400 / 11440.
        let f = fisher_exact(8, 2, 1, 5);
        assert!((f.p_value - 400.0 / 11440.0).abs() < 1e-12, "{f:?}");
        assert_eq!(f.odds_ratio, 20.0);
        // Symmetric and degenerate cases.
        assert!((fisher_exact(5, 5, 5, 5).p_value - 1.0).abs() < 1e-12);
        assert_eq!(fisher_exact(0, 0, 3, 4).p_value, 1.0);
        assert!(fisher_exact(0, 5, 0, 5).odds_ratio.is_nan());
        assert_eq!(fisher_exact(3, 0, 1, 3).odds_ratio, f64::INFINITY);
        // Large table: p is tiny but finite and OR exact.
        let f = fisher_exact(900, 100, 500, 500);
        assert!(f.p_value > 0.0 && f.p_value < 1e-80, "{f:?}");
        assert_eq!(f.odds_ratio, 9.0);
    }
}
