//! The report's pictures, as SVG files written with plotters next to the report: per backend and load shape a
//! latency CDF with one line per mode, and per backend a bar chart of requests/s per mode and shape.
//!
//! Only plotters' SVG backend is used: it writes text as SVG `<text>` elements, which the viewer renders with its
//! own fonts, so no font files are needed to build or run.

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::report::Run;

/// A chart written next to the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    /// Alt text and caption.
    pub(crate) title: String,
    /// File name, in the report's folder.
    pub(crate) file: String,
}

/// Line colours, one per mode in `MODES` order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The points of a latency CDF: (milliseconds, fraction of requests at or below), one per distinct recorded value
/// bucket, from the histogram's recorded values.
pub(crate) fn cdf_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = histogram.len().max(1) as f64;
    let mut seen = 0u64;
    histogram
        .iter_recorded()
        .map(|value| {
            seen += value.count_at_value();
            (
                histogram.highest_equivalent(value.value_iterated_to()) as f64 / 1e6,
                seen as f64 / total,
            )
        })
        .collect()
}

/// Writes the latency CDF of `series` (name, latencies in ns) to `path`.
pub(crate) fn write_cdf(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> anyhow::Result<()> {
    let lines: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, histogram)| (name.clone(), cdf_points(histogram)))
        .filter(|(_, points)| !points.is_empty())
        .collect();
    let low = lines
        .iter()
        .flat_map(|(_, p)| p.first().map(|p| p.0))
        .fold(f64::INFINITY, f64::min)
        .max(0.001);
    let high = lines
        .iter()
        .flat_map(|(_, p)| p.last().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(low * 10.0);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((low * 0.9..high * 1.1).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of requests ≤ latency")
        .y_labels(11)
        .draw()?;
    for (index, (name, points)) in lines.into_iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a bar chart of `groups` (mode, one value per shape) with one colour per shape to `path`.
pub(crate) fn write_bars(
    path: &Path,
    title: &str,
    shapes: &[String],
    groups: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let per_group = shapes.len().max(1);
    let slots = groups.len() * (per_group + 1);
    let top = groups
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..slots as f64, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_desc("requests/s")
        .draw()?;
    for (shape_index, shape) in shapes.iter().enumerate() {
        let colour = COLOURS[shape_index % COLOURS.len()];
        chart
            .draw_series(
                groups
                    .iter()
                    .enumerate()
                    .filter_map(|(group, (_, values))| {
                        let value = *values.get(shape_index)?;
                        let x = (group * (per_group + 1) + shape_index) as f64;
                        Some(Rectangle::new(
                            [(x + 0.05, 0.0), (x + 0.95, value)],
                            colour.filled(),
                        ))
                    }),
            )?
            .label(shape.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        chart.draw_series(
            groups
                .iter()
                .enumerate()
                .filter_map(|(group, (_, values))| {
                    let value = *values.get(shape_index)?;
                    let x = (group * (per_group + 1) + shape_index) as f64;
                    Some(Text::new(
                        format!("{value:.0}"),
                        (x + 0.1, value + top * 0.01),
                        ("sans-serif", 12),
                    ))
                }),
        )?;
    }
    // The mode names above their groups (the tallest bar reaches 87 % of the height).
    chart.draw_series(groups.iter().enumerate().map(|(group, (name, _))| {
        let x = (group * (per_group + 1)) as f64;
        Text::new(name.clone(), (x + 0.1, top * 0.95), ("sans-serif", 15))
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes every chart of `runs` next to `report` (named `<report stem>-<backend>-…svg`) and returns them.
pub(crate) fn write_all(report: &Path, runs: &[Run]) -> anyhow::Result<Vec<Image>> {
    let folder = report.parent().unwrap_or(Path::new("."));
    let stem = report
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy().into_owned());
    let mut images = Vec::new();
    for run in runs {
        let shapes = run.shapes();
        for shape in &shapes {
            let series: Vec<(String, &Histogram<u64>)> = run
                .modes
                .iter()
                .filter_map(|mode| {
                    let result = mode.shapes.iter().find(|s| s.shape.key == shape.key)?;
                    Some((mode.mode.key.to_owned(), &result.outcome.latencies))
                })
                .collect();
            let file = format!("{stem}-{}-cdf-{}.svg", run.backend, shape.key);
            let title = format!("{}, {}: latency CDF per mode", run.backend, shape.key);
            write_cdf(&folder.join(&file), &title, &series)?;
            images.push(Image { title, file });
        }
        let groups: Vec<(String, Vec<f64>)> = run
            .modes
            .iter()
            .map(|mode| {
                (
                    mode.mode.key.to_owned(),
                    mode.shapes.iter().map(|s| s.outcome.throughput()).collect(),
                )
            })
            .collect();
        let file = format!("{stem}-{}-throughput.svg", run.backend);
        let title = format!("{}: requests/s per mode and shape", run.backend);
        let names: Vec<String> = shapes.iter().map(|s| s.key.to_owned()).collect();
        write_bars(&folder.join(&file), &title, &names, &groups)?;
        images.push(Image { title, file });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::latency_histogram;

    #[test]
    fn the_cdf_rises_to_one_at_the_largest_latency() {
        let mut histogram = latency_histogram();
        for micros in [500u64, 500, 500, 2_000] {
            histogram.record(micros * 1_000).unwrap();
        }
        let points = cdf_points(&histogram);
        assert_eq!(points.len(), 2);
        assert!(
            (points[0].0 - 0.5).abs() < 0.001 && (points[0].1 - 0.75).abs() < 1e-9,
            "{points:?}"
        );
        assert!(
            (points[1].0 - 2.0).abs() < 0.002 && (points[1].1 - 1.0).abs() < 1e-9,
            "{points:?}"
        );
    }

    #[test]
    fn charts_are_svg_files_with_their_titles_and_labels_as_text() {
        let folder = std::env::temp_dir().join(format!("load-bench-charts-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let mut fast = latency_histogram();
        let mut slow = latency_histogram();
        for n in 1..=1_000u64 {
            fast.record(n * 1_000).unwrap();
            slow.record(n * 5_000).unwrap();
        }
        let cdf = folder.join("cdf.svg");
        write_cdf(
            &cdf,
            "sqlite latency",
            &[("off".into(), &fast), ("outbox-204".into(), &slow)],
        )
        .unwrap();
        let text = std::fs::read_to_string(&cdf).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
        for label in [
            "sqlite latency",
            "off",
            "outbox-204",
            "latency (ms, log scale)",
        ] {
            assert!(text.contains(label), "{label} missing");
        }
        assert!(text.contains("<polyline"), "no lines drawn");

        let bars = folder.join("bars.svg");
        write_bars(
            &bars,
            "sqlite req/s",
            &["1-user".into(), "ingress".into()],
            &[
                ("off".into(), vec![2000.0, 1500.0]),
                ("ff-204".into(), vec![1900.0, 1400.0]),
            ],
        )
        .unwrap();
        let text = std::fs::read_to_string(&bars).unwrap();
        for label in [
            "sqlite req/s",
            "1-user",
            "ingress",
            "off",
            "ff-204",
            "1900",
            "requests/s",
        ] {
            assert!(text.contains(label), "{label} missing");
        }
        assert!(text.matches("<rect").count() >= 4, "bars missing");
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
