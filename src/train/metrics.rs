//! Exact classification metrics over a whole split: per-class AUROC and AUPRC (average precision) and their
//! macro means. Unlike the reference's chunked averages (mfd-spec.md 5, 8.1), every score is computed over all
//! samples at once; a class with only one label value in the split gets NaN and is left out of the macro means.

/// AUROC by the rank statistic (Mann-Whitney U), ties get the average rank. `scores` and `labels` have the same
/// length; returns NaN when the labels are all 0 or all 1.
pub fn auroc(scores: &[f32], labels: &[bool]) -> f64 {
    assert_eq!(scores.len(), labels.len(), "auroc: scores and labels differ in length");
    let n_pos = labels.iter().filter(|&&y| y).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // ranks i+1 ..= j+1 share their mean
        let mean_rank = (i + j + 2) as f64 / 2.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum_pos += mean_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos as f64) * (n_pos as f64 + 1.0) / 2.0;
    u / (n_pos as f64 * n_neg as f64)
}

/// Cumulative (true positives, false positives) after each distinct score, from the highest down: tied scores form
/// one threshold. Average precision here, and the report's ROC and PR curves, are read off it.
pub fn threshold_counts(scores: &[f32], labels: &[bool]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        out.push((tp, fp));
        i = j + 1;
    }
    out
}

/// Average precision (area under the precision-recall step curve, as sklearn's average_precision_score): tied
/// scores form one threshold. NaN when there is no positive.
pub fn auprc(scores: &[f32], labels: &[bool]) -> f64 {
    assert_eq!(scores.len(), labels.len(), "auprc: scores and labels differ in length");
    let n_pos = labels.iter().filter(|&&y| y).count();
    if n_pos == 0 {
        return f64::NAN;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (tp, fp) in threshold_counts(scores, labels) {
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    ap
}

/// Mean of the finite values (NaN classes skipped); NaN if none.
pub fn nan_mean(xs: &[f64]) -> f64 {
    let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if finite.is_empty() {
        f64::NAN
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    }
}

/// Per-class AUROC and AUPRC for `scores` (N, O) row-major against `labels` (N, O).
pub fn per_class(scores: &[f32], labels: &[bool], o: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(scores.len(), labels.len());
    let n = scores.len() / o.max(1);
    let columns: Vec<(f64, f64)> = (0..o)
        .map(|c| {
            let s: Vec<f32> = (0..n).map(|i| scores[i * o + c]).collect();
            let y: Vec<bool> = (0..n).map(|i| labels[i * o + c]).collect();
            (auroc(&s, &y), auprc(&s, &y))
        })
        .collect();
    columns.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_hand_cases() {
        assert_eq!(auroc(&[0.1, 0.2, 0.3, 0.4], &[false, false, true, true]), 1.0);
        assert_eq!(auroc(&[0.4, 0.3, 0.2, 0.1], &[false, false, true, true]), 0.0);
        // all tied: 0.5
        assert_eq!(auroc(&[0.5; 4], &[false, true, false, true]), 0.5);
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
        assert!((auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]) - 0.75).abs() < 1e-12);
        assert!(auroc(&[0.1, 0.2], &[true, true]).is_nan());
    }

    #[test]
    fn auprc_hand_cases() {
        // sklearn: average_precision_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.8333...
        assert!((auprc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]) - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(auprc(&[0.9, 0.1], &[true, false]), 1.0);
        // ties form one threshold: precision 0.5 at recall 1
        assert_eq!(auprc(&[0.5, 0.5], &[true, false]), 0.5);
        assert!(auprc(&[0.1], &[false]).is_nan());
    }

    #[test]
    fn per_class_and_nan_mean() {
        let scores = [0.9, 0.1, 0.2, 0.8];
        let labels = [true, false, false, true];
        let (roc, pr) = per_class(&scores, &labels, 2);
        assert_eq!(roc, vec![1.0, 1.0]);
        assert_eq!(pr, vec![1.0, 1.0]);
        assert_eq!(nan_mean(&[1.0, f64::NAN, 0.0]), 0.5);
    }
}
