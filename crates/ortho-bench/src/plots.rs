//! The report's SVG plots: one per question the sweep answers, a colour per backend, log-log axes
//! with their units, a legend.

use crate::ratios::distinct;
use crate::report::Record;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

/// A plot: which records, which figure against which size, and the axes' names.
struct Plot {
    file: &'static str,
    title: &'static str,
    select: fn(&Record) -> bool,
    x: &'static str,
    y: &'static str,
    figure: fn(&Record) -> f64,
}

const PLOTS: &[Plot] = &[
    Plot {
        file: "attention_time.svg",
        title: "FAVOR+ against exact attention",
        select: |r| {
            r.family.starts_with("exact")
                || (r.family == "favor" && r.case.starts_with("favor+"))
                || (r.family == "favor-causal" && r.case.starts_with("favor+ parallel C=64"))
        },
        x: "sequence length L (tokens)",
        y: "device time (s)",
        figure: |r| r.device_median_s,
    },
    Plot {
        file: "causal_memory.svg",
        title: "Causal FAVOR+ scratch memory (C = 64)",
        select: |r| r.family == "favor-causal" && r.case.starts_with("favor+") && r.case.contains(" C=64 "),
        x: "sequence length L (tokens)",
        y: "scratch (bytes)",
        figure: |r| r.scratch_bytes as f64,
    },
    Plot {
        file: "cwy_time.svg",
        title: "Compact WY against sequential Householder",
        select: |r| r.family == "householder" || r.case.starts_with("cwy L=N "),
        x: "N = L",
        y: "device time (s)",
        figure: |r| r.device_median_s,
    },
    Plot {
        file: "group_maps.svg",
        title: "Matrix exponential and Cayley map throughput",
        select: |r| r.family == "expm" || r.family == "cayley",
        x: "batch (matrices)",
        y: "matrices per second",
        figure: |r| r.size as f64 / r.device_median_s,
    },
];

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Every plot of `records` that has points: `(file name, SVG)`.
pub fn plots(records: &[Record]) -> Result<Vec<(&'static str, String)>, String> {
    let mut drawn = Vec::new();
    for p in PLOTS {
        if let Some(svg) = draw(p, records).map_err(|e| format!("{}: {e}", p.file))? {
            drawn.push((p.file, svg));
        }
    }
    if let Some(svg) = draw_gflops(records).map_err(|e| format!("kernel_gflops.svg: {e}"))? {
        drawn.push(("kernel_gflops.svg", svg));
    }
    Ok(drawn)
}

/// Each family's best GFLOP/s per backend against the GEMM's best on that backend (a dashed line):
/// families along x, one colour per backend.
fn draw_gflops(records: &[Record]) -> Result<Option<String>, String> {
    let ran: Vec<&Record> = records.iter().filter(|r| r.pass && r.gflops > 0.0 && r.gflops.is_finite()).collect();
    let families = distinct(ran.iter().filter(|r| r.family != "gemm").map(|r| r.family.as_str()));
    let backends = distinct(ran.iter().map(|r| r.backend.as_str()));
    if families.is_empty() {
        return Ok(None);
    }
    let best = |backend: &str, family: &str| {
        ran.iter().filter(|r| r.backend == backend && r.family == family).map(|r| r.gflops).reduce(f64::max)
    };
    let (lo, hi) = ran.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(r.gflops), hi.max(r.gflops)));
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let last = families.len() as f64 - 0.5;
        let mut chart = ChartBuilder::on(&root)
            .caption("Best GFLOP/s of each kernel family against the GEMM", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(-0.5..last, (lo / 2.0..hi * 2.0).log_scale())
            .map_err(e)?;
        let label = |x: &f64| {
            families
                .get(x.round() as usize)
                .filter(|_| (x - x.round()).abs() < 0.01)
                .map_or(String::new(), |f| f.to_string())
        };
        chart
            .configure_mesh()
            .x_labels(families.len())
            .x_label_formatter(&label)
            .disable_x_mesh()
            .x_desc("kernel family (best case)")
            .y_desc("GFLOP/s")
            .draw()
            .map_err(e)?;
        for (i, backend) in backends.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            // Backends side by side within a family's slot.
            let offset = (i as f64 - (backends.len() - 1) as f64 / 2.0) * 0.12;
            let points: Vec<(f64, f64)> = families
                .iter()
                .enumerate()
                .filter_map(|(x, f)| best(backend, f).map(|y| (x as f64 + offset, y)))
                .collect();
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 5, colour.filled())))
                .map_err(e)?
                .label(format!("{backend} kernels"))
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, colour.filled()));
            if let Some(ceiling) = best(backend, "gemm") {
                let dashes = DashedLineSeries::new([(-0.5, ceiling), (last, ceiling)], 8, 5, colour.stroke_width(2));
                chart
                    .draw_series(dashes)
                    .map_err(e)?
                    .label(format!("{backend} GEMM"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            }
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(Some(svg))
}

/// A line of a plot: its legend, its colour (an index into the palette) and its points.
pub struct Series {
    pub label: String,
    pub colour: usize,
    pub points: Vec<(f64, f64)>,
}

/// One series per (case without its size, backend); `None` where no record has a positive figure.
fn draw(p: &Plot, records: &[Record]) -> Result<Option<String>, String> {
    let backends = distinct(records.iter().map(|r| r.backend.as_str()));
    let mut series: Vec<Series> = Vec::new();
    for r in records.iter().filter(|r| (p.select)(r)) {
        let (x, y) = (r.size as f64, (p.figure)(r));
        if !(x > 0.0 && y > 0.0 && y.is_finite()) {
            continue;
        }
        let label = format!("{} ({})", series_name(&r.case, r.size), r.backend);
        let colour = backends.iter().position(|&b| b == r.backend).unwrap_or(0);
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push((x, y)),
            None => series.push(Series { label, colour, points: vec![(x, y)] }),
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    line_plot(p.title, (p.x, p.y), series, true).map(Some)
}

/// An SVG of `series` as lines with points, a legend, a log-scale x axis and a log-scale (`y_log`) or
/// linear y axis; `axes` are the x and y descriptions. Consecutive series alternate line widths.
pub fn line_plot(title: &str, axes: (&str, &str), series: Vec<Series>, y_log: bool) -> Result<String, String> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (x0, x1, y0, y1) = points
        .fold((f64::MAX, 0.0f64, f64::MAX, 0.0f64), |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)));
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(title, ("sans-serif", 22)).margin(12).x_label_area_size(48).y_label_area_size(72);
        let x_range = (x0 / 1.5..x1 * 1.5).log_scale();
        if y_log {
            let chart = builder.build_cartesian_2d(x_range, (y0 / 2.0..y1 * 2.0).log_scale()).map_err(e)?;
            draw_series(chart, axes, series)?;
        } else {
            let chart = builder.build_cartesian_2d(x_range, 0.0..y1 * 1.1).map_err(e)?;
            draw_series(chart, axes, series)?;
        }
        root.present().map_err(e)?;
    }
    Ok(svg)
}

fn draw_series<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    (x, y): (&str, &str),
    series: Vec<Series>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    chart.configure_mesh().x_desc(x).y_desc(y).draw().map_err(e)?;
    for (i, Series { label, colour, mut points }) in series.into_iter().enumerate() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let style = ShapeStyle::from(&COLOURS[colour % COLOURS.len()]).stroke_width(1 + (i % 2) as u32);
        chart
            .draw_series(LineSeries::new(points, style).point_size(3))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(e)?;
    Ok(())
}

/// A case's name without the size it is plotted against (`favor+ L=1024` -> `favor+`).
fn series_name(case: &str, size: usize) -> String {
    let size = size.to_string();
    case.split(' ').filter(|w| w.rsplit_once('=').is_none_or(|(_, v)| v != size)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use crate::report::fixtures::record;

    /// Every plot of a sweep that touched every family is a whole SVG with its axes and a legend entry
    /// per series and backend; the scratch plot leaves out the CPU, which has no pool.
    #[test]
    fn every_plot_has_its_series() {
        let mut records = Vec::new();
        for backend in ["vulkan", "cpu"] {
            for (size, scale) in [(256, 1.0), (1024, 3.0)] {
                let at = |family: &str, case: &str| {
                    let mut r = record(backend, family, &format!("{case}={size}"), size, 0.01 * scale, 2.0 / scale);
                    r.scratch_bytes = if backend == "cpu" { 0 } else { 1 << 20 };
                    r
                };
                records.extend([
                    at("gemm", "gemm n"),
                    at("favor", "favor+ L"),
                    at("exact", "exact L"),
                    at("favor-causal", "favor+ parallel C=64 L"),
                    at("favor-causal", "favor+ sequential C=64 L"),
                    at("exact-causal", "exact causal L"),
                    at("cwy", "cwy L=N N"),
                    at("householder", "sequential householder L=N N"),
                    at("expm", "expm n=3 batch"),
                    at("cayley", "cayley n=3 batch"),
                ]);
            }
        }
        let plots = super::plots(&records).unwrap();
        let files: Vec<&str> = plots.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            files,
            ["attention_time.svg", "causal_memory.svg", "cwy_time.svg", "group_maps.svg", "kernel_gflops.svg"]
        );
        let series: [&[&str]; 5] = [
            &["favor+", "exact", "favor+ parallel C=64", "exact causal"],
            &["favor+ parallel C=64", "favor+ sequential C=64"],
            &["cwy L=N", "sequential householder L=N"],
            &["expm n=3", "cayley n=3"],
            &["kernels", "GEMM"],
        ];
        assert!(!plots[0].1.contains("favor+ sequential"), "one causal FAVOR+ setting against exact attention");
        for ((file, svg), names) in plots.iter().zip(series) {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{file}");
            for backend in ["vulkan", "cpu"] {
                for name in names {
                    let label = if *file == "kernel_gflops.svg" {
                        format!("{backend} {name}")
                    } else {
                        format!("{name} ({backend})")
                    };
                    let wanted = !(*file == "causal_memory.svg" && backend == "cpu");
                    assert_eq!(svg.contains(&label), wanted, "{label} in {file}");
                }
            }
        }
    }

    #[test]
    fn series_drop_only_the_plotted_size() {
        assert_eq!(super::series_name("favor+ parallel C=64 L=1024", 1024), "favor+ parallel C=64");
        assert_eq!(super::series_name("expm batch=256 n=3", 256), "expm n=3");
        assert_eq!(super::series_name("cwy L=N N=128", 128), "cwy L=N");
    }
}
