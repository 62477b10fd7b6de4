//! What a run reports while it trains: rows in `metrics.jsonl` (the record), the same rows in `metrics.csv` (for
//! spreadsheets and pandas), TensorBoard scalars under `tb/`, and progress on stderr (a bar on a terminal, a line
//! every `log_every` steps, at most one per `PROGRESS_GAP`, in a batch job's log).
//!
//! One naming scheme: every row has `kind` (train, val, test), `epoch` (0-based index of the epoch the row belongs
//! to) and `step` (optimiser steps done in total); the losses are `loss` and `bce` in every kind. TensorBoard tags
//! are `<kind>/<key>`. Only rank 0 writes.

use crate::error::{IoContext, Result};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The CSV's columns, in order (a row leaves the keys it lacks empty).
pub const CSV_COLUMNS: [&str; 17] = [
    "kind",
    "epoch",
    "step",
    "loss",
    "bce",
    "corr",
    "r2_bio",
    "r2_tech",
    "adv_loss",
    "macro_auroc",
    "macro_auprc",
    "lr",
    "lambda",
    "seq_per_s",
    "exposed_grad_comm_ms",
    "world",
    "elapsed_s",
];

/// Least time between two progress lines when stderr is not a terminal.
pub const PROGRESS_GAP: Duration = Duration::from_secs(10);

pub struct RunLog {
    jsonl: Option<(std::fs::File, PathBuf)>,
    csv: Option<(std::fs::File, PathBuf)>,
    tb: Option<crate::train::tensorboard::TbWriter>,
}

impl RunLog {
    /// Rank 0 appends to `<out>/metrics.jsonl`, `<out>/metrics.csv` and a new event file in `<out>/tb/`; other
    /// ranks log nothing. On resume (`resume_step`) the rows of steps after the checkpoint (trained again) are
    /// dropped from the JSONL first and the CSV is rebuilt from it, so both read as one uninterrupted run.
    pub fn open(out: &Path, rank0: bool, resume_step: Option<u64>) -> Result<RunLog> {
        if !rank0 {
            return Ok(RunLog { jsonl: None, csv: None, tb: None });
        }
        let jsonl_path = out.join("metrics.jsonl");
        let csv_path = out.join("metrics.csv");
        if let Some(step) = resume_step {
            let kept = truncate_jsonl(&jsonl_path, step)?;
            let mut csv = csv_header();
            for row in &kept {
                csv += &csv_row(row);
            }
            crate::data::binfile::write_atomic(&csv_path, csv.as_bytes())?;
        }
        let append = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p).at(p);
        let jsonl = append(&jsonl_path)?;
        let mut csv = append(&csv_path)?;
        if csv.metadata().at(&csv_path)?.len() == 0 {
            csv.write_all(csv_header().as_bytes()).at(&csv_path)?;
        }
        let tb = crate::train::tensorboard::TbWriter::create(&out.join("tb"))?;
        Ok(RunLog { jsonl: Some((jsonl, jsonl_path)), csv: Some((csv, csv_path)), tb: Some(tb) })
    }

    /// Append one row (an object with `kind` and `step`) to every log.
    pub fn write(&mut self, row: Value) -> Result<()> {
        if let Some((f, p)) = &mut self.jsonl {
            writeln!(f, "{row}").at(&*p)?;
        }
        if let Some((f, p)) = &mut self.csv {
            f.write_all(csv_row(&row).as_bytes()).at(&*p)?;
        }
        if let Some(tb) = &mut self.tb {
            let kind = row["kind"].as_str().unwrap_or("row");
            let step = row["step"].as_u64().unwrap_or(0);
            if let Some(obj) = row.as_object() {
                for (k, v) in obj {
                    if let (false, Some(x)) = (matches!(k.as_str(), "kind" | "epoch" | "step" | "world"), v.as_f64()) {
                        tb.scalar(&format!("{kind}/{k}"), step, x)?;
                    }
                }
            }
            tb.flush()?;
        }
        Ok(())
    }
}

fn csv_header() -> String {
    CSV_COLUMNS.join(",") + "\n"
}

fn csv_row(row: &Value) -> String {
    let cells: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|k| match &row[*k] {
            Value::Null => String::new(),
            Value::String(s) => s.replace([',', '\n'], " "),
            v => v.to_string(),
        })
        .collect();
    cells.join(",") + "\n"
}

/// Drop the rows of steps after `step` from a JSONL log (atomically); returns the rows kept.
fn truncate_jsonl(path: &Path, step: u64) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        r => r.at(path)?,
    };
    let mut keep = String::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let row: Option<Value> = serde_json::from_str(line).ok();
        if row.as_ref().and_then(|v| v["step"].as_u64()).is_none_or(|s| s <= step) {
            keep += line;
            keep.push('\n');
            rows.extend(row);
        }
    }
    if keep.len() != text.len() {
        crate::data::binfile::write_atomic(path, keep.as_bytes())?;
    }
    Ok(rows)
}

/// Training progress on stderr: an indicatif bar on a terminal, otherwise plain lines with step/total, seq/s and
/// the ETA (a batch job's log shows the run is alive and when it will end).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total_steps: u64,
    first_step: u64,
    started: Instant,
    last_line: Option<Instant>,
}

impl Progress {
    /// `total_steps`: steps the whole run will have done at its end; `done`: steps done before this session.
    pub fn new(rank0: bool, total_steps: u64, done: u64) -> Progress {
        let bar = (rank0 && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total_steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_position(done);
            bar
        });
        let last_line = if rank0 { None } else { Some(Instant::now() + Duration::from_secs(1 << 40)) };
        Progress { bar, total_steps, first_step: done, started: Instant::now(), last_line }
    }

    /// After a step: `step` steps done in total, in `epoch`; `msg` the latest losses (on logging steps).
    pub fn step(&mut self, step: u64, epoch: u64, epochs: usize, msg: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
            if let Some(m) = msg {
                bar.set_message(m.to_string());
            }
            return;
        }
        let Some(m) = msg else { return };
        if self.last_line.is_some_and(|t| t.elapsed() < PROGRESS_GAP) {
            return;
        }
        self.last_line = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64();
        let rate = (step - self.first_step) as f64 / secs.max(1e-9);
        let eta = if rate > 0.0 { self.total_steps.saturating_sub(step) as f64 / rate } else { f64::NAN };
        eprintln!(
            "mfd: step {step}/{} (epoch {}/{epochs}) {m}; {:.1} steps/s, elapsed {}, eta {}",
            self.total_steps,
            epoch + 1,
            rate,
            hms(secs),
            hms(eta)
        );
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Seconds as `1h02m03s` / `2m03s` / `3s` (`?` when unknown).
pub fn hms(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_rows_follow_the_columns_and_resume_truncates_both_logs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RunLog::open(dir.path(), true, None).unwrap();
        for step in 1..=4u64 {
            log.write(json!({"kind": "train", "epoch": 0, "step": step, "loss": 0.5, "bce": 0.4, "lr": 1e-3})).unwrap();
        }
        log.write(json!({"kind": "val", "epoch": 0, "step": 4, "loss": 0.6, "macro_auroc": 0.7})).unwrap();
        drop(log);
        let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().count(), 6);
        assert_eq!(csv.lines().next().unwrap(), CSV_COLUMNS.join(","));
        assert_eq!(csv.lines().nth(5).unwrap(), "val,0,4,0.6,,,,,,0.7,,,,,,,");
        // Resumed from step 2: steps 3, 4 and the validation row go.
        let log = RunLog::open(dir.path(), true, Some(2)).unwrap();
        drop(log);
        let jsonl = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!((jsonl.lines().count(), csv.lines().count()), (2, 3));
        assert!(dir.path().join("tb").read_dir().unwrap().count() >= 1);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(hms(5.2), "5s");
        assert_eq!(hms(125.0), "2m05s");
        assert_eq!(hms(3723.0), "1h02m03s");
        assert_eq!(hms(f64::NAN), "?");
    }
}
