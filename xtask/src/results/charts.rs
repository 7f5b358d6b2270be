//! The charts of results/, as SVG drawn with plotters. Text is laid out with DejaVu Sans, which
//! is compiled in: no font library or installed font is needed. Each measurement gets a panel
//! of its own, with its own axis, so a large figure never flattens a small one; a bar is the
//! median of the runs and its whisker spans the smallest to the largest.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::layout::{degraded_modes, modes, WORKLOADS};
use super::scaling::{curves, label, Curve, CurveRow};
use super::{sysbench_spread, PatternRow, Run, Spread, SysbenchRow};

const FONT: &str = "sans-serif";

const BLUE: RGBColor = RGBColor(90, 120, 180);
const ORANGE: RGBColor = RGBColor(220, 130, 50);
const GREEN: RGBColor = RGBColor(90, 160, 90);
const RED: RGBColor = RGBColor(200, 80, 80);

fn register_font() -> Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow!("the bundled DejaVu Sans font did not load"));
    });
    result
}

/// One series of bars: a value per category.
struct Series<'a> {
    name: &'a str,
    color: RGBColor,
    values: Vec<Spread>,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A panel of grouped bars with whiskers: one group per category, one bar per series.
fn bars(
    area: &Area,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Series],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().map(|v| v.max))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.2;
    let groups = categories.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..groups as f64, 0.0..max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < groups {
                categories[i].clone()
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
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| err(&e))?;
    let width = 0.8 / series.len() as f64;
    for (b, s) in series.iter().enumerate() {
        let color = s.color;
        let placed = || {
            s.values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.median.is_finite())
                .map(move |(g, v)| (g as f64 + 0.1 + b as f64 * width, *v))
        };
        chart
            .draw_series(placed().map(|(left, v)| {
                Rectangle::new(
                    [(left, 0.0), (left + width * 0.9, v.median)],
                    color.filled(),
                )
            }))
            .map_err(|e| err(&e))?
            .label(s.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart
            .draw_series(placed().filter(|(_, v)| v.max > v.min).map(|(left, v)| {
                ErrorBar::new_vertical(left + width * 0.45, v.min, v.median, v.max, BLACK, 8)
            }))
            .map_err(|e| err(&e))?;
    }
    legend(&mut chart)?;
    Ok(())
}

/// The series' names, in a box at the upper left.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())
}

/// Draws panels side by side into one SVG.
fn panels(
    path: &Path,
    size: (u32, u32),
    columns: usize,
    draw: impl Fn(&[Area]) -> Result<(), String>,
) -> Result<()> {
    register_font()?;
    let root = SVGBackend::new(path, size).into_drawing_area();
    let rows = 1;
    let result = root
        .fill(&WHITE)
        .map_err(|e| e.to_string())
        .and_then(|()| draw(&root.split_evenly((rows, columns))))
        .and_then(|()| root.present().map_err(|e| e.to_string()));
    result.map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

/// sysbench, one panel per workload: transactions per second of the standalone server and the
/// cluster.
pub fn sysbench_tps(path: &Path, rows: &[SysbenchRow]) -> Result<()> {
    panels(path, (1200, 420), WORKLOADS.len(), |areas| {
        for (area, workload) in areas.iter().zip(WORKLOADS) {
            let of = |target| vec![sysbench_spread(rows, target, workload).0];
            bars(
                area,
                workload,
                "transactions/s",
                &[String::new()],
                &[
                    Series {
                        name: "standalone",
                        color: BLUE,
                        values: of("standalone"),
                    },
                    Series {
                        name: "cluster",
                        color: ORANGE,
                        values: of("cluster"),
                    },
                ],
            )?;
        }
        Ok(())
    })
}

/// The patterns load test: latency percentiles and throughput per mode, the degraded-worker
/// scenario's modes after the others.
pub fn patterns(path: &Path, run: &Run) -> Result<()> {
    let mut categories: Vec<(String, &[PatternRow], &str)> = modes()
        .into_iter()
        .map(|m| (m.to_string(), run.patterns.as_slice(), m))
        .collect();
    let mut titles = (
        "Latency by mode".to_string(),
        "Throughput by mode".to_string(),
    );
    if let Some(d) = &run.meta.degraded {
        for mode in degraded_modes() {
            categories.push((format!("{mode} (slow)"), run.degraded.as_slice(), mode));
        }
        let slow = format!("; (slow): {} at {} CPU", d.worker, d.cpus);
        titles.0.push_str(&slow);
        titles.1.push_str(&slow);
    }
    let labels: Vec<String> = categories.iter().map(|(l, _, _)| l.clone()).collect();
    let of = |measure: fn(&contract::report::Report) -> f64| -> Vec<Spread> {
        categories
            .iter()
            .map(|(_, rows, mode)| {
                Spread::of(
                    rows.iter()
                        .filter(|r| r.mode == *mode)
                        .map(|r| measure(&r.report)),
                )
            })
            .collect()
    };
    panels(path, (1800, 480), 2, |areas| {
        bars(
            &areas[0],
            &titles.0,
            "milliseconds",
            &labels,
            &[
                Series {
                    name: "p50",
                    color: GREEN,
                    values: of(|r| r.latency_ms.p50),
                },
                Series {
                    name: "p90",
                    color: BLUE,
                    values: of(|r| r.latency_ms.p90),
                },
                Series {
                    name: "p99",
                    color: RED,
                    values: of(|r| r.latency_ms.p99),
                },
            ],
        )?;
        bars(
            &areas[1],
            &titles.1,
            "requests/s",
            &labels,
            &[Series {
                name: "requests/s",
                color: ORANGE,
                values: of(|r| r.throughput_rps),
            }],
        )
    })
}

/// The scaling curve, one panel per workload: the median throughput at each number of workers
/// (a whisker spans the runs) and the ideal line, N times one worker's.
pub fn scaling(path: &Path, rows: &[CurveRow]) -> Result<()> {
    let curves = curves(rows);
    let noun = match rows.first() {
        Some(r) if r.meta.engine == "galera" => "nodes",
        _ => "workers",
    };
    panels(path, (1500, 460), curves.len().max(1), |areas| {
        for (area, (workload, curve)) in areas.iter().zip(&curves) {
            line_panel(area, workload, noun, curve, rows)?;
        }
        Ok(())
    })
}

fn line_panel(
    area: &Area,
    workload: &str,
    noun: &str,
    curve: &Curve,
    rows: &[CurveRow],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let most = curve.points.iter().map(|(n, _, _)| *n).max().unwrap_or(1);
    let top = curve
        .points
        .iter()
        .map(|(n, v, _)| v.max(f64::from(*n) * curve.per_worker))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{}, by {noun}", label(workload)), (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..f64::from(most) + 0.5, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(noun)
        .x_labels(usize::from(most) + 2)
        // Whole numbers of workers only.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| err(&e))?;
    let ideal = [0.0, f64::from(most)].map(|n| (n, n * curve.per_worker));
    chart
        .draw_series(LineSeries::new(ideal, BLUE.stroke_width(1)))
        .map_err(|e| err(&e))?
        .label("ideal: N times one")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLUE));
    let measured: Vec<(f64, f64)> = curve
        .points
        .iter()
        .map(|(n, v, _)| (f64::from(*n), *v))
        .collect();
    chart
        .draw_series(LineSeries::new(measured.clone(), ORANGE.stroke_width(3)))
        .map_err(|e| err(&e))?
        .label("measured (median)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], ORANGE.stroke_width(3)));
    chart
        .draw_series(measured.iter().map(|p| Circle::new(*p, 4, ORANGE.filled())))
        .map_err(|e| err(&e))?;
    let spreads = curve.points.iter().filter_map(|(n, _, _)| {
        let s = Spread::of(
            rows.iter()
                .filter(|r| r.workload == workload && r.workers == *n)
                .map(|r| r.reads_per_s),
        );
        (s.max > s.min).then_some((f64::from(*n), s))
    });
    chart
        .draw_series(
            spreads.map(|(n, s)| ErrorBar::new_vertical(n, s.min, s.median, s.max, BLACK, 8)),
        )
        .map_err(|e| err(&e))?;
    legend(&mut chart)?;
    Ok(())
}
