//! The charts of results/, as SVG drawn with plotters. Text is laid out with DejaVu Sans, which
//! is compiled in: no font library or installed font is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::layout::{modes, WORKLOADS};
use super::{pattern_means, sysbench_means, PatternMeans, PatternRow, SysbenchRow};

const FONT: &str = "sans-serif";

fn register_font() -> Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow!("the bundled DejaVu Sans font did not load"));
    });
    result
}

/// A grouped bar chart: one group per category, one bar per series.
fn grouped_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[&str],
    series: &[(&str, RGBColor, Vec<f64>)],
) -> Result<()> {
    register_font()?;
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let groups = categories.len();
    let bars = series.len();
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..groups as f64, 0.0..max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 && i < groups {
                    categories[i].to_string()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| {
                if max > 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .y_desc(y_label)
            .label_style((FONT, 14))
            .draw()?;
        let width = 0.8 / bars as f64;
        for (b, (name, color, values)) in series.iter().enumerate() {
            let color = *color;
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(g, v)| {
                            let left = g as f64 + 0.1 + b as f64 * width;
                            Rectangle::new([(left, 0.0), (left + width * 0.9, *v)], color.filled())
                        }),
                )?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

/// Transactions per second, standalone vs cluster, per sysbench workload.
pub fn sysbench_tps(path: &Path, rows: &[SysbenchRow]) -> Result<()> {
    let of = |target| {
        WORKLOADS
            .iter()
            .map(|w| sysbench_means(rows, target, w).0)
            .collect()
    };
    grouped_bars(
        path,
        "sysbench: standalone server vs cluster",
        "transactions per second",
        &WORKLOADS,
        &[
            ("standalone", RGBColor(90, 120, 180), of("standalone")),
            ("cluster", RGBColor(220, 130, 50), of("cluster")),
        ],
    )
}

/// Latency percentiles per mode of the patterns load test.
pub fn pattern_latency(path: &Path, rows: &[PatternRow]) -> Result<()> {
    let modes = modes();
    let of =
        |p: fn(&PatternMeans) -> f64| modes.iter().map(|m| p(&pattern_means(rows, m))).collect();
    grouped_bars(
        path,
        "Patterns load test: latency by mode",
        "milliseconds",
        &modes,
        &[
            ("p50", RGBColor(90, 160, 90), of(|m| m.p50)),
            ("p90", RGBColor(90, 120, 180), of(|m| m.p90)),
            ("p99", RGBColor(200, 80, 80), of(|m| m.p99)),
        ],
    )
}
