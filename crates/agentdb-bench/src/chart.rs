//! The chart in docs/BENCHMARKS.md: query latency and throughput against data size, for this
//! engine and the peers, drawn from the `results-*.json` files of the data set directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

/// One system's points: (collection size, p50 ms, queries per second).
type Series = BTreeMap<String, Vec<(f64, f64, f64)>>;

/// Every system's points from the `results-*.json` files in `dirs`.
fn collect(dirs: &[PathBuf]) -> anyhow::Result<Series> {
    let mut series = Series::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !(name.starts_with("results-") && name.ends_with(".json")) {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            let (Some(system), Some(n), Some(p50), Some(qps)) = (
                v["system"].as_str(),
                v["n"].as_f64(),
                v["query_p50_ms"].as_f64(),
                v["qps"].as_f64(),
            ) else {
                continue; // A peer that failed to run has no figures.
            };
            series
                .entry(system.to_owned())
                .or_default()
                .push((n, p50, qps));
        }
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(series)
}

/// Draws the two panels into a PNG at `out`.
pub fn draw(dirs: &[PathBuf], out: &Path, font: &Path) -> anyhow::Result<()> {
    let series = collect(dirs)?;
    anyhow::ensure!(
        !series.is_empty(),
        "no results-*.json with figures in the given directories"
    );
    let bytes: &'static [u8] = Box::leak(
        std::fs::read(font)
            .with_context(|| font.display().to_string())?
            .into_boxed_slice(),
    );
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("cannot use font {}", font.display()))?;
    let all: Vec<&(f64, f64, f64)> = series.values().flatten().collect();
    let (nmin, nmax) = all
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (lmin, lmax) = all
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (qmin, qmax) = all
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.2), b.max(p.2)));
    let root = BitMapBackend::new(out, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(700);
    let colors = [&RED, &BLUE, &GREEN, &MAGENTA, &BLACK, &CYAN];
    let panels: [(&DrawingArea<_, _>, &str, (f64, f64), usize); 2] = [
        (&left, "query latency p50 (ms, log)", (lmin, lmax), 1),
        (&right, "queries per second (log)", (qmin, qmax), 2),
    ];
    for (area, title, (lo, hi), field) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (nmin * 0.8..nmax * 1.25).log_scale(),
                (lo * 0.5..hi * 2.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("episodes in the collection")
            .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
            .draw()?;
        for (i, (system, points)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            let pts: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.0, if field == 1 { p.1 } else { p.2 }))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(system.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
