//! Latency samples and the medians across runs.

use hdrhistogram::Histogram;

/// One run's latencies (nanoseconds) and its rate.
#[derive(Debug)]
pub struct Run {
    pub hist: Histogram<u64>,
    pub per_sec: f64,
}

impl Run {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            hist: Histogram::new(3)?,
            per_sec: 0.0,
        })
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1e6
    }
}

/// Waits for every task of a phase that started at `started`, merges their latencies and sets
/// the rate: operations ÷ wall time.
pub async fn merged(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Run>>>,
    started: std::time::Instant,
) -> anyhow::Result<Run> {
    let mut r = Run::new()?;
    for t in tasks {
        r.hist.add(&t.await??.hist)?;
    }
    r.per_sec = r.hist.len() as f64 / started.elapsed().as_secs_f64();
    Ok(r)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Medians of p50, p99 and rate over runs.
pub fn summarize(runs: &[Run]) -> (f64, f64, f64) {
    let mut p50: Vec<f64> = runs.iter().map(|r| r.ms(0.5)).collect();
    let mut p99: Vec<f64> = runs.iter().map(|r| r.ms(0.99)).collect();
    let mut rate: Vec<f64> = runs.iter().map(|r| r.per_sec).collect();
    (median(&mut p50), median(&mut p99), median(&mut rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
