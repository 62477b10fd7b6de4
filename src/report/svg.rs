//! SVG charts for the run report and the tools' figures, drawn with plotters' SVG backend: axes with tick labels,
//! the legend in a strip beside the plot (never over the data), heatmaps with a colour bar, and a per-category dot
//! chart with every category named. Each function returns one `<svg>` element; a drawing error (none is expected:
//! the backend writes into a String) becomes a small SVG that says so, never a panic.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Size of a line chart (px), legend strip included.
pub const W: u32 = 720;
pub const H: u32 = 320;
/// Width of the legend strip at the right of a chart.
const LEGEND_W: u32 = 210;
const FONT: &str = "sans-serif";
/// Longest legend entry or category name drawn (characters); longer ones end in "...".
const MAX_NAME: usize = 30;

/// Tableau's 10 colours (less the two closest to grey and olive), distinct for the first 8 series.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];
const GREY: RGBColor = RGBColor(110, 110, 110);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = std::result::Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Draw on a white `w` x `h` canvas; an error becomes an SVG with its message.
fn render(w: u32, h: u32, draw: impl FnOnce(&Area) -> Drawn) -> String {
    let mut s = String::new();
    let res = {
        let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
        let r = root.fill(&WHITE).map_err(err).and_then(|_| draw(&root));
        r.and_then(|_| root.present().map_err(err))
    };
    match res {
        Ok(()) => s,
        Err(e) => format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"><text x="10" y="20">plot failed: {}</text></svg>"#,
            esc(&e)
        ),
    }
}

fn short(name: &str) -> String {
    if name.chars().count() <= MAX_NAME {
        name.to_string()
    } else {
        format!("{}...", name.chars().take(MAX_NAME - 3).collect::<String>())
    }
}

/// (min, max) of the finite values; `None` if there are none.
fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// An axis range around `r`, widened by `pad` of its span on each side; a point gets a unit span.
fn axis_range(r: Option<(f64, f64)>, pad: f64) -> (f64, f64) {
    let (lo, hi) = r.unwrap_or((0.0, 1.0));
    let span = hi - lo;
    if span < 1e-12 * lo.abs().max(1.0) {
        return (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0));
    }
    (lo - pad * span, hi + pad * span)
}

/// A tick label for `v` on an axis spanning `span`: enough decimals to tell ticks apart (trailing zeros dropped),
/// scientific when huge or tiny.
pub fn tick(v: f64, span: f64) -> String {
    if v == 0.0 || v.abs() < span * 1e-9 {
        return "0".into();
    }
    // One notation per axis: scientific when the whole axis is tiny or huge.
    if !(1e-2..1e6).contains(&span) || v.abs() >= 1e6 {
        return format!("{v:.1e}");
    }
    // plotters puts ticks at multiples of 1, 2 or 5 x 10^k, at most ~10 per axis: span / 10 bounds the step.
    let decimals = (-(span.abs().max(1e-300) / 10.0).log10().floor()).clamp(0.0, 6.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Pixel height of the canvas's text at `size` (plotters estimates text boxes; SVG viewers place the text).
fn text_style(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font())
}

/// How a legend entry's sample is drawn.
#[derive(Clone, Copy)]
enum Sample {
    Line,
    /// A line with a dot on it.
    LineDot,
    Dashed,
    /// The k-th marker shape of `marker`.
    Marker(usize),
}

/// Marker shape k (circle, triangle, cross) at `p`.
fn draw_marker<DB: DrawingBackend, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<DB, Cartesian2d<X, Y>>,
    k: usize,
    color: RGBColor,
    pts: impl Iterator<Item = (f64, f64)>,
) -> Drawn {
    match k % 3 {
        0 => chart.draw_series(pts.map(|p| Circle::new(p, 3, color.filled()))).map(|_| ()),
        1 => chart.draw_series(pts.map(|p| TriangleMarker::new(p, 4, color.filled()))).map(|_| ()),
        _ => chart.draw_series(pts.map(|p| Cross::new(p, 3, color.stroke_width(2)))).map(|_| ()),
    }
    .map_err(err)
}

/// The legend: a sample and the name of each entry, from the top of `area`.
fn legend(area: &Area, entries: &[(String, RGBColor, Sample)]) -> Drawn {
    let (_, h) = area.dim_in_pixel();
    let left = text_style(14).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, color, sample)) in entries.iter().enumerate() {
        let y = 40 + 18 * i as i32;
        if y + 18 > h as i32 && i + 1 < entries.len() {
            let more = format!("(+{} more)", entries.len() - i);
            area.draw(&Text::new(more, (8, y), left.clone())).map_err(err)?;
            break;
        }
        let style = color.stroke_width(2);
        let line = |a: i32, b: i32| area.draw(&PathElement::new(vec![(a, y), (b, y)], style)).map_err(err);
        match sample {
            Sample::Line => line(6, 30)?,
            Sample::LineDot => {
                line(6, 30)?;
                area.draw(&Circle::new((18, y), 3, color.filled())).map_err(err)?
            }
            Sample::Dashed => {
                line(6, 13)?;
                line(18, 25)?
            }
            Sample::Marker(k) => match k % 3 {
                0 => area.draw(&Circle::new((18, y), 3, color.filled())).map_err(err)?,
                1 => area.draw(&TriangleMarker::new((18, y), 4, color.filled())).map_err(err)?,
                _ => area.draw(&Cross::new((18, y), 3, style)).map_err(err)?,
            },
        }
        area.draw(&Text::new(short(name), (36, y), left.clone())).map_err(err)?;
    }
    Ok(())
}

/// One named line of (x, y) points; non-finite points break the line.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (reference lines: chance, baselines).
    pub dashed: bool,
    /// A dot on every point (sparse series, e.g. one value per epoch).
    pub dots: bool,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points, dashed: false, dots: false }
    }

    pub fn dots(mut self) -> Self {
        self.dots = true;
        self
    }

    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// Most points drawn per series: longer ones keep every k-th point and the last (a long run logs ~10^5 rows).
const MAX_POINTS: usize = 2000;

/// Runs of consecutive finite points, thinned to about `MAX_POINTS` in all.
fn runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let stride = points.len().div_ceil(MAX_POINTS).max(1);
    let last = points.len().saturating_sub(1);
    let points: Vec<(f64, f64)> =
        points.iter().enumerate().filter(|(i, _)| i % stride == 0 || *i == last).map(|(_, &p)| p).collect();
    let mut out: Vec<Vec<(f64, f64)>> = vec![vec![]];
    for p in points {
        if p.0.is_finite() && p.1.is_finite() {
            if let Some(last) = out.last_mut() {
                last.push(p);
            }
        } else if out.last().is_some_and(|l| !l.is_empty()) {
            out.push(vec![]);
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// A line chart: several series on linear axes, the legend beside the plot.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed axis ranges; by default the data's range (y padded by 5%).
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Canvas size (px), legend strip included.
    pub size: (u32, u32),
}

impl LineChart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: vec![],
            x_range: None,
            y_range: None,
            size: (W, H),
        }
    }

    pub fn series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    pub fn ranges(mut self, x: Option<(f64, f64)>, y: Option<(f64, f64)>) -> Self {
        self.x_range = x;
        self.y_range = y;
        self
    }

    pub fn size(mut self, w: u32, h: u32) -> Self {
        self.size = (w, h);
        self
    }

    pub fn render(&self) -> String {
        let (w, h) = self.size;
        render(w, h, |root| {
            let (plot, strip) = root.split_horizontally(w.saturating_sub(LEGEND_W));
            let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
            let ys = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
            let (x0, x1) = self.x_range.unwrap_or_else(|| axis_range(finite_range(xs), 0.0));
            let (y0, y1) = self.y_range.unwrap_or_else(|| axis_range(finite_range(ys), 0.05));
            let mut chart = ChartBuilder::on(&plot)
                .caption(&self.title, (FONT, 18))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(62)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            let (xspan, yspan) = (x1 - x0, y1 - y0);
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_labels(7)
                .y_labels(6)
                .x_label_formatter(&|v| tick(*v, xspan))
                .y_label_formatter(&|v| tick(*v, yspan))
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 15))
                .bold_line_style(BLACK.mix(0.08))
                .light_line_style(TRANSPARENT)
                .draw()
                .map_err(err)?;
            for (i, s) in self.series.iter().enumerate() {
                let color = if s.dashed { GREY } else { PALETTE[i % PALETTE.len()] };
                let style = color.stroke_width(2);
                for run in runs(&s.points) {
                    if run.len() == 1 {
                        chart.draw_series(std::iter::once(Circle::new(run[0], 3, color.filled()))).map_err(err)?;
                    } else if s.dashed {
                        chart.draw_series(DashedLineSeries::new(run, 6, 4, style)).map_err(err)?;
                    } else {
                        if s.dots {
                            chart.draw_series(run.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
                        }
                        chart.draw_series(LineSeries::new(run, style)).map_err(err)?;
                    }
                }
            }
            let entries: Vec<(String, RGBColor, Sample)> = self
                .series
                .iter()
                .enumerate()
                .map(|(i, s)| match (s.dashed, s.dots) {
                    (true, _) => (s.name.clone(), GREY, Sample::Dashed),
                    (false, dots) => {
                        (s.name.clone(), PALETTE[i % PALETTE.len()], if dots { Sample::LineDot } else { Sample::Line })
                    }
                })
                .collect();
            legend(&strip, &entries)
        })
    }
}

/// Line chart of several named series of (x, y) points, data ranges, default size.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let mut c = LineChart::new(title, x_label, y_label);
    for (name, pts) in series {
        c = c.series(Series::new(name.clone(), pts.clone()));
    }
    c.render()
}

/// Dot chart of values per named category (e.g. per-class AUROC and AUPRC): one marker per category and series,
/// categories along x in the given order, each named below the axis (rotated) when there are at most 160.
pub fn category_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    names: &[String],
    series: &[(String, Vec<f64>)],
    y_range: Option<(f64, f64)>,
) -> String {
    let n = names.len();
    let named = n <= 160;
    let longest = names.iter().map(|s| short(s).chars().count()).max().unwrap_or(1) as u32;
    let w = (90 + 14 * n as u32 + LEGEND_W).clamp(W, 2600);
    let label_h = if named { 36 + 7 * longest } else { 40 };
    let h = 260 + label_h;
    render(w, h, |root| {
        let (plot, strip) = root.split_horizontally(w - LEGEND_W);
        let ys = series.iter().flat_map(|s| s.1.iter().copied());
        let (y0, y1) = y_range.unwrap_or_else(|| axis_range(finite_range(ys.chain([0.0])), 0.05));
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(label_h)
            .y_label_area_size(62)
            .build_cartesian_2d(-0.5..(n.max(1) as f64 - 0.5), y0..y1)
            .map_err(err)?;
        let yspan = y1 - y0;
        let label_at = |v: &f64| -> String {
            let i = v.round();
            if (v - i).abs() > 1e-6 || i < 0.0 || i as usize >= n {
                return String::new();
            }
            if named {
                short(&names[i as usize])
            } else {
                format!("{i}")
            }
        };
        let y_tick = |v: &f64| tick(*v, yspan);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x_label)
            .y_desc(y_label)
            .x_labels(if named { 0 } else { 12 })
            .y_labels(6)
            .x_label_formatter(&label_at)
            .y_label_formatter(&y_tick)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .bold_line_style(BLACK.mix(0.08))
            .light_line_style(TRANSPARENT);
        mesh.draw().map_err(err)?;
        if named {
            // Names drawn here rather than by the mesh, which lets rotated labels reach into the plot.
            let rotated = text_style(13).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
            for (i, name) in names.iter().enumerate() {
                let (x, y) = chart.backend_coord(&(i as f64, y0));
                root.draw(&PathElement::new(vec![(x, y), (x, y + 4)], BLACK.stroke_width(1))).map_err(err)?;
                root.draw(&Text::new(short(name), (x, y + 7), rotated.clone())).map_err(err)?;
            }
        }
        let mut entries = vec![];
        // Series side by side around each category's tick, so that equal values stay visible.
        let dodge = if series.len() > 1 { 0.5 / series.len() as f64 } else { 0.0 };
        for (k, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let dx = dodge * (k as f64 - (series.len() as f64 - 1.0) / 2.0);
            let pts = values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(move |(i, &v)| (i as f64 + dx, v));
            draw_marker(&mut chart, k, color, pts)?;
            entries.push((name.clone(), color, Sample::Marker(k)));
        }
        legend(&strip, &entries)
    })
}

/// Blue-white-red colour of `v` in [lo, hi] (white at the midpoint); NaN is grey.
fn diverging(v: f64, lo: f64, hi: f64) -> RGBColor {
    if !v.is_finite() {
        return RGBColor(200, 200, 200);
    }
    let t = (2.0 * (v - lo) / (hi - lo) - 1.0).clamp(-1.0, 1.0);
    let fade = |x: f64| (255.0 * (1.0 - x.abs())).round() as u8;
    if t >= 0.0 {
        RGBColor(255, fade(t), fade(t))
    } else {
        RGBColor(fade(t), fade(t), 255)
    }
}

/// Heatmap of a (rows, cols) row-major matrix with values in [-1, 1] (blue negative, white 0, red positive; NaN
/// grey), row 0 at the top, with a colour bar labelled `value_label`.
pub fn heatmap(
    title: &str,
    row_label: &str,
    col_label: &str,
    value_label: &str,
    rows: usize,
    cols: usize,
    values: &[f64],
) -> String {
    let (lo, hi) = (-1.0, 1.0);
    let bar_w = 110;
    let (w, h) = (620 + bar_w, 560);
    render(w, h, |root| {
        let (main, bar) = root.split_horizontally(w - bar_w);
        let mut chart = ChartBuilder::on(&main)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            // A reversed y range puts row 0 at the top; integer ticks fall on cell centres.
            .build_cartesian_2d(-0.5..(cols.max(1) as f64 - 0.5), (rows.max(1) as f64 - 0.5)..-0.5)
            .map_err(err)?;
        let index = |v: &f64, n: usize| -> String {
            let i = v.round();
            if (v - i).abs() > 1e-6 || i < 0.0 || i as usize >= n {
                return String::new();
            }
            format!("{}", i as usize)
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(col_label)
            .y_desc(row_label)
            .x_labels(cols.min(16) + 1)
            .y_labels(rows.min(16) + 1)
            .x_label_formatter(&|v| index(v, cols))
            .y_label_formatter(&|v| index(v, rows))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(err)?;
        let cells = (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c)));
        chart
            .draw_series(cells.map(|(r, c)| {
                let v = values.get(r * cols + c).copied().unwrap_or(f64::NAN);
                let (x, y) = (c as f64, r as f64);
                Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], diverging(v, lo, hi).filled())
            }))
            .map_err(err)?;
        colour_bar(&bar, value_label, lo, hi)
    })
}

/// A vertical colour bar of the diverging map over [lo, hi], ticks on its right, `label` above it.
fn colour_bar(area: &Area, label: &str, lo: f64, hi: f64) -> Drawn {
    let mut bar = ChartBuilder::on(area)
        .caption(label, (FONT, 15))
        .margin_top(20)
        .margin_bottom(50)
        .margin_left(8)
        .margin_right(4)
        .right_y_label_area_size(44)
        .build_cartesian_2d(0.0..1.0, lo..hi)
        .map_err(err)?;
    let span = hi - lo;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| tick(*v, span))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    let steps = 64;
    bar.draw_series((0..steps).map(|i| {
        let a = lo + span * i as f64 / steps as f64;
        let b = lo + span * (i + 1) as f64 / steps as f64;
        Rectangle::new([(0.0, a), (1.0, b)], diverging(0.5 * (a + b), lo, hi).filled())
    }))
    .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_have_enough_digits() {
        assert_eq!(tick(0.0, 1.0), "0");
        assert_eq!(tick(0.2, 1.0), "0.2");
        assert_eq!(tick(1.0, 1.0), "1");
        assert_eq!(tick(1500.0, 3000.0), "1500");
        assert_eq!(tick(0.862, 0.02), "0.862");
        assert_eq!(tick(2e-4, 1e-3), "2.0e-4");
        assert_eq!(tick(1e-3, 1e-3), "1.0e-3");
    }

    /// The trimmed contents of every `<text>` element.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
            .collect()
    }

    #[test]
    fn charts_are_svg_with_ticks_and_legends() {
        let l = line_chart(
            "loss",
            "step",
            "BCE",
            &[
                ("train".into(), vec![(0.0, 1.0), (10.0, 0.5), (f64::NAN, 0.4), (20.0, 0.3)]),
                ("val".into(), vec![(10.0, 0.7)]),
            ],
        );
        assert!(l.starts_with("<svg") && l.trim_end().ends_with("</svg>") && l.contains("polyline"), "{l}");
        let t = texts(&l);
        for text in ["train", "val", "step", "BCE", "loss"] {
            assert!(t.iter().any(|s| s == text), "{text} missing: {t:?}");
        }
        // More than two x tick labels.
        assert!(["0", "5", "10", "15", "20"].iter().filter(|x| t.iter().any(|s| s == *x)).count() >= 4, "{t:?}");
        let names: Vec<String> = ["a<b", "c"].iter().map(|s| s.to_string()).collect();
        let c = category_chart(
            "auroc",
            "class",
            "AUROC",
            &names,
            &[("AUROC".into(), vec![0.7, f64::NAN])],
            Some((0.0, 1.0)),
        );
        let t = texts(&c);
        assert!(t.iter().any(|s| s == "a&lt;b") && t.iter().any(|s| s == "AUROC"), "{t:?}");
        let h = heatmap("corr", "tech", "bio", "Pearson r", 2, 2, &[1.0, -1.0, 0.0, f64::NAN]);
        let t = texts(&h);
        assert!(["Pearson r", "-1", "0", "1"].iter().all(|x| t.iter().any(|s| s == x)), "{t:?}");
        // A short values slice draws NaN cells instead of panicking.
        assert!(heatmap("x", "r", "c", "v", 3, 3, &[0.5]).contains("<rect"));
        // Long series are thinned, keeping their last point.
        let long: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let r = runs(&long);
        assert!(r.len() == 1 && r[0].len() <= MAX_POINTS + 1 && r[0].last() == long.last(), "{}", r[0].len());
    }
}
