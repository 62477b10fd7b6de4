//! ROC and precision-recall curves of one class, with the threshold conventions of `train::metrics` (tied scores
//! form one threshold), so the area under the ROC points is the class's AUROC and the PR steps give its AUPRC.
//! Curves are thinned to a few hundred points: the report needs the shape, not every threshold.

use crate::train::metrics::threshold_counts;

/// Keeps the first and last points and every point at least `1 / max_points` (L1) from the last one kept.
fn thin(points: Vec<(f64, f64)>, max_points: usize) -> Vec<(f64, f64)> {
    let step = 1.0 / max_points.max(2) as f64;
    let mut out: Vec<(f64, f64)> = Vec::new();
    let n = points.len();
    for (i, p) in points.into_iter().enumerate() {
        let far = out.last().is_none_or(|q| (p.0 - q.0).abs() + (p.1 - q.1).abs() >= step);
        if far || i + 1 == n {
            out.push(p);
        }
    }
    out
}

/// ROC curve (false positive rate, true positive rate) from (0, 0) to (1, 1); empty when the labels are all one
/// value (no curve exists).
pub fn roc_curve(scores: &[f32], labels: &[bool], max_points: usize) -> Vec<(f64, f64)> {
    let n_pos = labels.iter().filter(|&&y| y).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return vec![];
    }
    let mut pts = vec![(0.0, 0.0)];
    pts.extend(
        threshold_counts(scores, labels)
            .into_iter()
            .map(|(tp, fp)| (fp as f64 / n_neg as f64, tp as f64 / n_pos as f64)),
    );
    thin(pts, max_points)
}

/// Precision-recall curve (recall, precision) as the step function whose area is the average precision: at each
/// threshold recall moves right at the new precision. Empty without positives.
pub fn pr_curve(scores: &[f32], labels: &[bool], max_points: usize) -> Vec<(f64, f64)> {
    let n_pos = labels.iter().filter(|&&y| y).count();
    if n_pos == 0 {
        return vec![];
    }
    let mut pts = Vec::new();
    let mut prev_recall = 0.0;
    for (tp, fp) in threshold_counts(scores, labels) {
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp).max(1) as f64;
        pts.push((prev_recall, precision));
        pts.push((recall, precision));
        prev_recall = recall;
    }
    thin(pts, max_points)
}

/// Column `k` of a row-major (N, O) matrix.
pub fn column<T: Copy>(m: &[T], o: usize, k: usize) -> Vec<T> {
    if o == 0 {
        return vec![];
    }
    m.chunks_exact(o).filter_map(|row| row.get(k).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics::{auprc, auroc};

    /// Trapezoid area under (x, y) points.
    fn area(p: &[(f64, f64)]) -> f64 {
        p.windows(2).map(|w| (w[1].0 - w[0].0) * 0.5 * (w[0].1 + w[1].1)).sum()
    }

    #[test]
    fn areas_match_the_metrics() {
        // Pseudo-random scores with ties and a few hundred samples.
        let scores: Vec<f32> = (0..600u32).map(|i| (i * 7919 % 101) as f32 / 100.0).collect();
        let labels: Vec<bool> =
            (0..600u32).map(|i| (i * 7919 % 101) as f32 / 100.0 + (i % 7) as f32 * 0.1 > 0.8).collect();
        let roc = roc_curve(&scores, &labels, 100_000);
        assert!((area(&roc) - auroc(&scores, &labels)).abs() < 1e-9);
        assert_eq!((roc[0], *roc.last().unwrap()), ((0.0, 0.0), (1.0, 1.0)));
        // Under a step function the trapezoid area of its corner points is exact.
        let pr = pr_curve(&scores, &labels, 100_000);
        assert!((area(&pr) - auprc(&scores, &labels)).abs() < 1e-9);
        // Thinned curves keep their ends and stay close.
        let small = roc_curve(&scores, &labels, 20);
        assert!(small.len() <= 45 && *small.last().unwrap() == (1.0, 1.0));
        assert!((area(&small) - auroc(&scores, &labels)).abs() < 0.05);
    }

    #[test]
    fn degenerate_labels_have_no_curve() {
        assert!(roc_curve(&[0.1, 0.2], &[true, true], 10).is_empty());
        assert!(pr_curve(&[0.1, 0.2], &[false, false], 10).is_empty());
        assert_eq!(column(&[1, 2, 3, 4, 5, 6], 3, 1), vec![2, 5]);
        assert!(column(&[1, 2], 0, 0).is_empty());
    }
}
