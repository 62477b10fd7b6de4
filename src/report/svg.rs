//! Minimal SVG plots for the HTML report: line charts, bar charts and heatmaps. Hand-written on purpose: the
//! report needs three chart kinds, and a plotting dependency would outweigh them.

use std::fmt::Write;

const W: f64 = 560.0;
const H: f64 = 300.0;
const PAD_L: f64 = 56.0;
const PAD_R: f64 = 16.0;
const PAD_T: f64 = 28.0;
const PAD_B: f64 = 40.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

fn frame(title: &str, x_label: &str, y_label: &str, y_lo: f64, y_hi: f64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<text x="{}" y="16" font-size="13" text-anchor="middle">{}</text>"#, W / 2.0, esc(title));
    let (x0, y0, x1, y1) = (PAD_L, H - PAD_B, W - PAD_R, PAD_T);
    let _ =
        write!(s, r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#888"/>"##, x1 - x0, y0 - y1);
    for i in 0..=4 {
        let v = y_lo + (y_hi - y_lo) * i as f64 / 4.0;
        let y = y0 - (y0 - y1) * i as f64 / 4.0;
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, x0 - 4.0, y + 4.0, fmt_num(v));
    }
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, (x0 + x1) / 2.0, H - 8.0, esc(x_label));
    let _ = write!(
        s,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(y_label)
    );
    s
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 || (v != 0.0 && v.abs() < 0.01) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// Line chart of several named series of (x, y) points.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (x_lo, x_hi) = finite_range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
    let (y_lo, y_hi) = finite_range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
    let mut s = frame(title, x_label, y_label, y_lo, y_hi);
    let sx = |x: f64| PAD_L + (W - PAD_L - PAD_R) * (x - x_lo) / (x_hi - x_lo);
    let sy = |y: f64| (H - PAD_B) - (H - PAD_B - PAD_T) * (y - y_lo) / (y_hi - y_lo);
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        if path.len() == 1 {
            let _ = write!(
                s,
                r#"<circle cx="{}" r="3" fill="{color}" cy="{}"/>"#,
                path[0].split(',').next().unwrap_or("0"),
                path[0].split(',').nth(1).unwrap_or("0")
            );
        } else if !path.is_empty() {
            let _ =
                write!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#, path.join(" "));
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            PAD_L + 8.0,
            PAD_T + 14.0 + 13.0 * i as f64,
            esc(name)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text></svg>"#,
        PAD_L,
        H - PAD_B + 14.0,
        fmt_num(x_lo),
        W - PAD_R,
        H - PAD_B + 14.0,
        fmt_num(x_hi)
    );
    s
}

/// Bar chart of labelled values (e.g. per-class AUROC); NaN bars are drawn empty.
pub fn bar_chart(title: &str, y_label: &str, bars: &[(String, f64)], y_range: Option<(f64, f64)>) -> String {
    let (y_lo, y_hi) = y_range.unwrap_or_else(|| finite_range(bars.iter().map(|b| b.1).chain([0.0])));
    let mut s = frame(title, "", y_label, y_lo, y_hi);
    let n = bars.len().max(1) as f64;
    let bw = (W - PAD_L - PAD_R) / n;
    let sy = |y: f64| (H - PAD_B) - (H - PAD_B - PAD_T) * ((y - y_lo) / (y_hi - y_lo)).clamp(0.0, 1.0);
    for (i, (label, v)) in bars.iter().enumerate() {
        let x = PAD_L + bw * i as f64;
        if v.is_finite() {
            let top = sy(*v);
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4"><title>{}: {v:.4}</title></rect>"##,
                x + bw * 0.1,
                bw * 0.8,
                (H - PAD_B - top).max(0.0),
                esc(label)
            );
        }
        if bars.len() <= 40 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" font-size="8" text-anchor="end" transform="rotate(-60 {:.1} {})">{}</text>"#,
                x + bw / 2.0,
                H - PAD_B + 10.0,
                x + bw / 2.0,
                H - PAD_B + 10.0,
                esc(label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Heatmap of a (rows, cols) matrix in [-1, 1] (blue negative, red positive), e.g. bio/tech cross-correlations.
pub fn heatmap(title: &str, row_label: &str, col_label: &str, rows: usize, cols: usize, values: &[f64]) -> String {
    let mut s = frame(title, col_label, row_label, 0.0, rows as f64);
    let cw = (W - PAD_L - PAD_R) / cols.max(1) as f64;
    let ch = (H - PAD_B - PAD_T) / rows.max(1) as f64;
    for r in 0..rows {
        for c in 0..cols {
            let v = values[r * cols + c].clamp(-1.0, 1.0);
            let v = if v.is_finite() { v } else { 0.0 };
            let (red, green, blue) = if v >= 0.0 {
                (255.0, 255.0 * (1.0 - v), 255.0 * (1.0 - v))
            } else {
                (255.0 * (1.0 + v), 255.0 * (1.0 + v), 255.0)
            };
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="rgb({:.0},{:.0},{:.0})"><title>[{r},{c}] {v:.3}</title></rect>"#,
                PAD_L + cw * c as f64,
                PAD_T + ch * r as f64,
                cw + 0.5,
                ch + 0.5,
                red,
                green,
                blue
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg() {
        let l = line_chart(
            "loss",
            "step",
            "BCE",
            &[("train".into(), vec![(0.0, 1.0), (1.0, 0.5)]), ("val".into(), vec![(1.0, 0.7)])],
        );
        assert!(l.starts_with("<svg") && l.ends_with("</svg>") && l.contains("polyline"));
        let b = bar_chart("auroc", "AUROC", &[("a<b".into(), 0.7), ("c".into(), f64::NAN)], Some((0.0, 1.0)));
        assert!(b.contains("a&lt;b") && b.ends_with("</svg>"));
        let h = heatmap("corr", "tech", "bio", 2, 2, &[1.0, -1.0, 0.0, f64::NAN]);
        assert_eq!(h.matches("<rect").count(), 5);
    }
}
