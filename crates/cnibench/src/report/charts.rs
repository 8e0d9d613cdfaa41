//! SVG chart primitives drawn with plotters (pure: data in, SVG text out).
//!
//! - [`hbars`]: horizontal bars or dots with CI whiskers and a reference line (overview,
//!   comparison ratios);
//! - [`strip`]: every repetition of one point in run order over its mean and CI band;
//! - [`lines`]: lines with CI bands on a linear, log10 or percentile x axis (scale sweeps,
//!   percentile plots, CDFs);
//! - [`stacked`]: horizontal stacked bars (CPU split).
//!
//! Legends sit beside the plot, never over data. Sizes are chosen for a 1250 px column
//! (full-width charts) or three per row (small multiples); text is at least 12 px there.

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::prelude::*;

use super::esc;
use super::num;

/// The categorical palette (d3 "category10"): distinguishable, and in print too.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// A point a reader must look at (not converged, failed, unstable).
pub const FLAGGED: RGBColor = RGBColor(214, 96, 39);
/// A significant improvement.
pub const BETTER: RGBColor = RGBColor(26, 152, 80);
/// A significant regression.
pub const WORSE: RGBColor = RGBColor(215, 48, 39);
/// Neither, or not known.
pub const NEUTRAL: RGBColor = RGBColor(120, 120, 120);
/// Bars of a point that is fine.
pub const NORMAL: RGBColor = RGBColor(31, 119, 180);

const FONT: &str = "sans-serif";
/// Text sizes asked of plotters, which writes them as about 0.8 of that in px: 15 gives
/// 12 px labels, 20 a 16 px title.
const LABEL: u32 = 15;
const TITLE: u32 = 20;
/// Width of a full-width chart, px.
pub const WIDE: u32 = 1200;
/// Size of a small multiple, px (three fit a 1250 px column).
pub const SMALL: (u32, u32) = (400, 240);

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// An axis tick: [`num`] without trailing zeros (`0`, `2.5`, `0.12`), which read as
/// round numbers on an axis.
pub fn tick(v: f64) -> String {
    let s = num(v);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Runs `f` on an SVG canvas of `size`; a drawing error becomes a visible message (the
/// page still renders, and the browser test finds the chart without data).
fn svg(
    size: (u32, u32),
    f: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            .and_then(|()| f(&root))
            .and_then(|()| root.present().map_err(|e| Box::new(e) as _))
    };
    match result {
        Ok(()) => out,
        Err(e) => format!(
            "<p class=\"error\">chart error: {}</p>",
            esc(&e.to_string())
        ),
    }
}

type RowChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, SegmentedCoord<RangedCoordusize>>>;

/// Width of a row chart's label column: its longest label, within bounds.
fn label_area_px(labels: &[&str]) -> u32 {
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(8) as u32;
    (longest * 7 + 16).clamp(120, 720)
}

/// Approximate width of `text` at the label size (sans-serif averages under half an em).
fn text_px(text: &str) -> f64 {
    text.chars().count() as f64 * 7.6 + 12.0
}

/// A chart of labelled rows, the first label at the top, over the x range `x`; the mesh
/// is drawn. Row `i` of `labels` is segment `labels.len() - 1 - i`.
fn row_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    x_desc: &str,
    labels: &[&str],
    x: std::ops::Range<f64>,
) -> Result<RowChart<'a, 'b>, Box<dyn std::error::Error>> {
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, TITLE))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(label_area_px(labels))
        .build_cartesian_2d(x, (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < labels.len() => labels[n - 1 - *i].to_string(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| tick(*v))
        .x_desc(x_desc)
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, LABEL))
        .draw()?;
    Ok(chart)
}

/// One row of [`hbars`].
#[derive(Debug, Clone, PartialEq)]
pub struct HBar {
    /// Row label (left of the plot).
    pub label: String,
    /// The value.
    pub value: f64,
    /// CI of the value, when known.
    pub ci: Option<(f64, f64)>,
    /// Text right of the whisker.
    pub text: String,
    /// Fill colour.
    pub color: RGBColor,
}

/// Horizontal bars (`dots = false`, from 0) or dots (`dots = true`) with CI whiskers, in
/// the given row order, top to bottom; `reference` draws a dashed vertical line (100 %).
pub fn hbars(
    title: &str,
    x_desc: &str,
    rows: &[HBar],
    reference: Option<f64>,
    dots: bool,
) -> String {
    let n = rows.len().max(1);
    let height = 90 + 24 * n as u32;
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    svg((WIDE, height), |root| {
        let hi = rows
            .iter()
            .map(|r| r.ci.map_or(r.value, |c| c.1.max(r.value)))
            .chain(reference)
            .fold(f64::NEG_INFINITY, f64::max);
        let lo = rows
            .iter()
            .map(|r| r.ci.map_or(r.value, |c| c.0.min(r.value)))
            .chain(reference)
            .fold(f64::INFINITY, f64::min);
        let (x0, x1) = if dots {
            let pad = ((hi - lo).abs() * 0.08).max(hi.abs() * 0.01).max(1e-9);
            // Room on the right for the value text.
            (lo - pad, hi + (hi - lo).abs() * 0.35 + pad)
        } else {
            // Room on the right for each row's value text, which starts where its bar or
            // whisker ends: x1 such that the text fits in the plot's width.
            let x0 = lo.min(0.0);
            let plot_px = f64::from(WIDE - 20 - label_area_px(&labels));
            let top = rows
                .iter()
                .map(|r| {
                    let end = r.ci.map_or(r.value, |c| c.1.max(r.value));
                    let share = (text_px(&r.text) / plot_px).min(0.75);
                    (end - share * x0) / (1.0 - share)
                })
                .fold(if hi > 0.0 { hi * 1.1 } else { 1.0 }, f64::max);
            (x0, top)
        };
        let mut chart = row_chart(root, title, x_desc, &labels, x0..x1)?;
        let row = |i: usize| n - 1 - i;
        if let Some(r) = reference {
            chart.draw_series(DashedLineSeries::new(
                vec![(r, SegmentValue::Exact(0)), (r, SegmentValue::Exact(n))],
                6,
                4,
                BLACK.mix(0.7).stroke_width(1),
            ))?;
        }
        for (i, b) in rows.iter().enumerate() {
            let y = || SegmentValue::CenterOf(row(i));
            if dots {
                chart.draw_series(std::iter::once(Circle::new(
                    (b.value, y()),
                    5,
                    b.color.filled(),
                )))?;
            } else {
                let mut r = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row(i))),
                        (b.value, SegmentValue::Exact(row(i) + 1)),
                    ],
                    b.color.mix(0.85).filled(),
                );
                r.set_margin(4, 4, 0, 0);
                chart.draw_series(std::iter::once(r))?;
            }
            let mut end = b.value;
            if let Some((l, h)) = b.ci {
                end = end.max(h);
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(l, y()), (h, y())],
                    BLACK.stroke_width(2),
                )))?;
                for x in [l, h] {
                    chart.draw_series(std::iter::once(
                        EmptyElement::at((x, y()))
                            + PathElement::new(vec![(0, -5), (0, 5)], BLACK.stroke_width(2)),
                    ))?;
                }
            }
            chart.draw_series(std::iter::once(
                EmptyElement::at((end, y())) + Text::new(b.text.clone(), (8, -6), (FONT, LABEL)),
            ))?;
        }
        Ok(())
    })
}

/// What [`strip`] draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Strip<'a> {
    /// Title (the point's coordinates).
    pub title: &'a str,
    /// Axis description with unit.
    pub y_desc: &'a str,
    /// Every repetition in run order: `(warm-up, value)`.
    pub values: &'a [(bool, f64)],
    /// Mean of the measured repetitions.
    pub mean: f64,
    /// 95 % CI of the mean.
    pub ci: Option<(f64, f64)>,
    /// Drawn in the warning colour.
    pub flagged: bool,
    /// Position (1-based, warm-ups included) of the repetition where the point changed
    /// level: a dashed vertical line before it.
    pub change_at: Option<usize>,
}

/// Every repetition of a point in run order (x: repetition number, warm-ups hollow and
/// grey at the left) over the band of the CI of the mean and a dashed mean line. The y axis
/// is zoomed to the data so that level shifts, trends and two modes are visible.
pub fn strip(s: &Strip<'_>) -> String {
    svg(SMALL, |root| {
        let n = s.values.len().max(1);
        let (mut lo, mut hi) = s
            .values
            .iter()
            .map(|v| v.1)
            .chain(s.ci.into_iter().flat_map(|c| [c.0, c.1]))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.12).max(hi.abs() * 0.005).max(1e-12);
        let color = if s.flagged { FLAGGED } else { NORMAL };
        let mut chart = ChartBuilder::on(root)
            .caption(s.title, (FONT, LABEL))
            .margin(6)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .build_cartesian_2d(0.4f64..(n as f64 + 0.6), (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_labels(n.min(12))
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-9 && i >= 1.0 {
                    format!("{i:.0}")
                } else {
                    String::new()
                }
            })
            .y_labels(5)
            .y_label_formatter(&|v| tick(*v))
            .x_desc("repetition (run order)")
            .y_desc(s.y_desc)
            .label_style((FONT, LABEL))
            .axis_desc_style((FONT, LABEL))
            .draw()?;
        let x0 = 0.4;
        let x1 = n as f64 + 0.6;
        if let Some((l, h)) = s.ci {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, l), (x1, h)],
                color.mix(0.15).filled(),
            )))?;
        }
        chart.draw_series(DashedLineSeries::new(
            vec![(x0, s.mean), (x1, s.mean)],
            5,
            3,
            color.stroke_width(1),
        ))?;
        let pts: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.0)
            .map(|(i, v)| ((i + 1) as f64, v.1))
            .collect();
        chart.draw_series(LineSeries::new(
            pts.clone(),
            color.mix(0.35).stroke_width(1),
        ))?;
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        if let Some(at) = s.change_at {
            let x = at as f64 - 0.5;
            chart.draw_series(DashedLineSeries::new(
                vec![(x, lo - pad), (x, hi + pad)],
                4,
                3,
                FLAGGED.stroke_width(2),
            ))?;
        }
        chart.draw_series(
            s.values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.0)
                .map(|(i, v)| Circle::new(((i + 1) as f64, v.1), 4, NEUTRAL.stroke_width(1))),
        )?;
        Ok(())
    })
}

/// The x axis of [`lines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Linear.
    Linear,
    /// log10 (object counts, latencies).
    Log,
    /// Quantiles on HdrHistogram's axis: `-log10(1 - q)`, so 90 %, 99 %, 99.9 % are evenly
    /// spaced.
    Percentile,
}

impl XAxis {
    fn to_plot(self, x: f64) -> f64 {
        match self {
            XAxis::Linear => x,
            XAxis::Log => x.max(1e-12).log10(),
            XAxis::Percentile => -(1.0 - x.min(0.9999)).log10(),
        }
    }

    fn label(self, v: f64) -> String {
        let whole = (v - v.round()).abs() < 1e-9;
        match self {
            XAxis::Linear => tick(v),
            XAxis::Log if whole => {
                let x = 10f64.powf(v.round());
                if x >= 1000.0 {
                    format!("{}k", x / 1000.0)
                } else if x >= 1.0 {
                    format!("{x}")
                } else {
                    tick(x)
                }
            }
            XAxis::Percentile if whole && v >= 0.0 => {
                // 90 %, 99 %, 99.9 %: one decimal at most, none when whole.
                let q = 1.0 - 10f64.powf(-v.round());
                format!("{}%", (q * 1000.0).round() / 10.0)
            }
            _ => String::new(),
        }
    }
}

/// One point of a [`Line`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinePoint {
    /// x in data units (quantile 0..1 on [`XAxis::Percentile`]).
    pub x: f64,
    /// y.
    pub y: f64,
    /// CI of y, drawn as a band.
    pub ci: Option<(f64, f64)>,
    /// Drawn with a warning ring.
    pub flagged: bool,
}

/// One series of [`lines`].
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend name.
    pub name: String,
    /// Points in x order.
    pub points: Vec<LinePoint>,
    /// Thin and without markers (one repetition among many).
    pub thin: bool,
    /// Colour index into [`PALETTE`].
    pub color: usize,
}

/// What [`lines`] draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Lines<'a> {
    /// Title.
    pub title: &'a str,
    /// x axis description with unit.
    pub x_desc: &'a str,
    /// y axis description with unit.
    pub y_desc: &'a str,
    /// The series.
    pub series: &'a [Line],
    /// x axis kind.
    pub x_axis: XAxis,
    /// A dashed horizontal reference (name, y), e.g. the baseline.
    pub reference: Option<(String, f64)>,
    /// y axis from 0 (amounts) or zoomed to the data.
    pub y_from_zero: bool,
    /// Canvas size.
    pub size: (u32, u32),
}

/// Lines with markers and CI bands; the legend sits right of the plot.
pub fn lines(l: &Lines<'_>) -> String {
    svg(l.size, |root| {
        let named: Vec<&Line> = l
            .series
            .iter()
            .filter(|s| !s.thin && !s.name.is_empty())
            .collect();
        let legend_px = if named.is_empty() && l.reference.is_none() {
            0
        } else {
            named
                .iter()
                .map(|s| s.name.chars().count())
                .chain(l.reference.iter().map(|r| r.0.chars().count()))
                .max()
                .unwrap_or(0) as u32
                * 7
                + 44
        }
        .min(l.size.0 / 2);
        let (plot, legend) = root.split_horizontally(l.size.0 - legend_px);
        let xs = l
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| l.x_axis.to_plot(p.x)));
        let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        if !(x0.is_finite() && x1.is_finite()) {
            (x0, x1) = (0.0, 1.0);
        }
        if x0 >= x1 {
            x0 -= 1.0;
            x1 += 1.0;
        }
        let xpad = (x1 - x0) * 0.04;
        let ys = l
            .series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .flat_map(|p| [Some(p.y), p.ci.map(|c| c.0), p.ci.map(|c| c.1)])
            })
            .flatten()
            .chain(l.reference.as_ref().map(|r| r.1));
        let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        if !(y0.is_finite() && y1.is_finite()) {
            (y0, y1) = (0.0, 1.0);
        }
        if l.y_from_zero {
            y0 = y0.min(0.0);
        }
        let ypad = ((y1 - y0) * 0.08).max(y1.abs() * 0.01).max(1e-12);
        let y_lo = if l.y_from_zero && y0 >= 0.0 {
            0.0
        } else {
            y0 - ypad
        };
        let mut chart = ChartBuilder::on(&plot)
            .caption(l.title, (FONT, if l.size.0 >= WIDE / 2 { 16 } else { 13 }))
            .margin(8)
            .x_label_area_size(38)
            .y_label_area_size(62)
            .build_cartesian_2d((x0 - xpad)..(x1 + xpad), y_lo..(y1 + ypad))?;
        let axis = l.x_axis;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_label_formatter(&|v| axis.label(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_desc(l.x_desc)
            .y_desc(l.y_desc)
            .label_style((FONT, LABEL))
            .axis_desc_style((FONT, LABEL))
            .draw()?;
        if let Some((_, r)) = &l.reference {
            chart.draw_series(DashedLineSeries::new(
                vec![(x0 - xpad, *r), (x1 + xpad, *r)],
                6,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))?;
        }
        for s in l.series {
            let color = PALETTE[s.color % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (axis.to_plot(p.x), p.y)).collect();
            let band: Vec<(f64, f64, f64)> = s
                .points
                .iter()
                .filter_map(|p| p.ci.map(|c| (axis.to_plot(p.x), c.0, c.1)))
                .collect();
            if band.len() >= 2 {
                let mut poly: Vec<(f64, f64)> = band.iter().map(|b| (b.0, b.2)).collect();
                poly.extend(band.iter().rev().map(|b| (b.0, b.1)));
                chart.draw_series(std::iter::once(Polygon::new(
                    poly,
                    color.mix(0.18).filled(),
                )))?;
            } else {
                for b in &band {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(b.0, b.1), (b.0, b.2)],
                        color.stroke_width(2),
                    )))?;
                }
            }
            if s.thin {
                chart.draw_series(LineSeries::new(pts, color.mix(0.45).stroke_width(1)))?;
                continue;
            }
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
            chart.draw_series(
                s.points
                    .iter()
                    .filter(|p| p.flagged)
                    .map(|p| Circle::new((axis.to_plot(p.x), p.y), 7, FLAGGED.stroke_width(2))),
            )?;
        }
        let mut y = 40;
        for s in &named {
            let color = PALETTE[s.color % PALETTE.len()];
            legend.draw(&PathElement::new(
                vec![(4, y), (26, y)],
                color.stroke_width(3),
            ))?;
            legend.draw(&Text::new(s.name.clone(), (32, y - 7), (FONT, LABEL)))?;
            y += 20;
        }
        if let Some((name, _)) = &l.reference {
            legend.draw(&PathElement::new(vec![(4, y), (12, y)], BLACK.mix(0.6)))?;
            legend.draw(&PathElement::new(vec![(18, y), (26, y)], BLACK.mix(0.6)))?;
            legend.draw(&Text::new(name.clone(), (32, y - 7), (FONT, LABEL)))?;
        }
        Ok(())
    })
}

/// One row of [`stacked`].
#[derive(Debug, Clone, PartialEq)]
pub struct StackRow {
    /// Row label.
    pub label: String,
    /// Segment lengths, in the order of the part names.
    pub parts: Vec<f64>,
}

/// Horizontal stacked bars, rows top to bottom, with the total at the end of each bar and
/// the part names as a legend right of the plot.
pub fn stacked(title: &str, x_desc: &str, parts: &[(&str, RGBColor)], rows: &[StackRow]) -> String {
    let n = rows.len().max(1);
    let height = 90 + 24 * n as u32;
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    svg((WIDE, height), |root| {
        let (plot, legend) = root.split_horizontally(WIDE - 150);
        let top = rows
            .iter()
            .map(|r| r.parts.iter().sum::<f64>())
            .fold(0.0, f64::max);
        let xmax = if top > 0.0 { top * 1.2 } else { 1.0 };
        let mut chart = row_chart(&plot, title, x_desc, &labels, 0f64..xmax)?;
        for (i, r) in rows.iter().enumerate() {
            let row = n - 1 - i;
            let mut x = 0.0;
            for (k, v) in r.parts.iter().enumerate() {
                let color = parts.get(k).map_or(NEUTRAL, |p| p.1);
                let mut rect = Rectangle::new(
                    [
                        (x, SegmentValue::Exact(row)),
                        (x + v, SegmentValue::Exact(row + 1)),
                    ],
                    color.filled(),
                );
                rect.set_margin(3, 3, 0, 0);
                chart.draw_series(std::iter::once(rect))?;
                x += v;
            }
            chart.draw_series(std::iter::once(
                EmptyElement::at((x, SegmentValue::CenterOf(row)))
                    + Text::new(num(x), (6, -6), (FONT, LABEL)),
            ))?;
        }
        let mut y = 40;
        for (name, color) in parts {
            legend.draw(&Rectangle::new([(6, y - 6), (20, y + 6)], color.filled()))?;
            legend.draw(&Text::new((*name).to_string(), (26, y - 7), (FONT, LABEL)))?;
            y += 20;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `svg` has a text element saying `text` (plotters puts it on its own line).
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    #[test]
    fn ticks_drop_trailing_zeros() {
        assert_eq!(
            [0.0, 2.0, 2.5, 0.125, 1500.0].map(tick),
            ["0", "2", "2.5", "0.125", "1500"]
        );
    }

    #[test]
    fn axes_label_decades_and_percentiles() {
        assert_eq!(XAxis::Log.label(3.0), "1k");
        assert_eq!(XAxis::Log.label(0.0), "1");
        assert_eq!(XAxis::Log.label(2.5), "");
        assert_eq!(XAxis::Percentile.label(2.0), "99%");
        assert_eq!(XAxis::Percentile.label(3.0), "99.9%");
        assert!((XAxis::Percentile.to_plot(0.999) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn every_chart_draws_its_marks() {
        let values = [(true, 5.0), (false, 9.0), (false, 9.5), (false, 4.0)];
        let s = strip(&Strip {
            title: "t",
            y_desc: "Gbit/s",
            values: &values,
            mean: 7.5,
            ci: Some((3.0, 12.0)),
            flagged: false,
            change_at: Some(4),
        });
        // Three measured dots, one hollow warm-up.
        assert_eq!(s.matches("<circle").count(), 4, "{s}");
        // The change marker is dashed: short segments in the flag colour (a point that is
        // not flagged uses it nowhere else).
        assert!(s.matches("stroke=\"#D66027\"").count() > 3, "{s}");
        let bars = hbars(
            "o",
            "%",
            &[HBar {
                label: "a".into(),
                value: 90.0,
                ci: Some((85.0, 95.0)),
                text: "90%".into(),
                color: NORMAL,
            }],
            Some(100.0),
            false,
        );
        assert!(bars.contains("90%") && !bars.contains("chart error"));
        let l = lines(&Lines {
            title: "sweep",
            x_desc: "services",
            y_desc: "Gbit/s",
            series: &[Line {
                name: "inter".into(),
                points: [1.0, 10.0, 100.0]
                    .iter()
                    .map(|x| LinePoint {
                        x: *x,
                        y: 10.0 - x.log10(),
                        ci: Some((9.0 - x.log10(), 11.0 - x.log10())),
                        flagged: *x > 50.0,
                    })
                    .collect(),
                thin: false,
                color: 0,
            }],
            x_axis: XAxis::Log,
            reference: Some(("baseline".into(), 12.0)),
            y_from_zero: true,
            size: (WIDE, 400),
        });
        // Three markers and one warning ring; the band is one polygon.
        assert_eq!(l.matches("<circle").count(), 4, "{l}");
        assert_eq!(l.matches("<polygon").count(), 1, "{l}");
        assert!(has_text(&l, "inter") && has_text(&l, "baseline"), "{l}");
        let st = stacked(
            "cpu",
            "s/Gbit",
            &[("user", PALETTE[0]), ("system", PALETTE[1])],
            &[StackRow {
                label: "client".into(),
                parts: vec![0.1, 0.2],
            }],
        );
        assert!(has_text(&st, "0.300") && has_text(&st, "system"), "{st}");
    }
}
