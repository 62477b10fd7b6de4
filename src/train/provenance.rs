//! `provenance.json`: what produced a run (binary version and commit, command line, host, launcher and world,
//! backend, config and dataset checksums, start time), written by rank 0 when a session starts. A flat object of
//! strings and numbers; a resumed run keeps the first start and counts its resumes.

use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::error::{IoContext, Result};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

pub const PROVENANCE_FILE: &str = "provenance.json";

/// What the trainer knows about this session.
pub struct Session<'a> {
    pub cfg: &'a Config,
    pub ds: &'a Dataset,
    pub backend: &'a str,
    pub comm: &'a str,
    pub world: usize,
    /// Global step this session starts from (0 for a fresh run).
    pub start_step: u64,
}

/// Write (or on resume update) `<out>/provenance.json` atomically.
pub fn write(out: &Path, s: &Session<'_>) -> Result<()> {
    let path = out.join(PROVENANCE_FILE);
    let previous: Map<String, Value> = match std::fs::read(&path) {
        Ok(bytes) if s.start_step > 0 => serde_json::from_slice(&bytes).unwrap_or_default(),
        _ => Map::new(),
    };
    let now = utc_now();
    let launch = crate::dist::Launch::detect().map(|l| format!("{:?}", l.launcher)).unwrap_or_else(|e| e.to_string());
    let mut p = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "git_commit": env!("MFD_GIT_COMMIT"),
        "command_line": std::env::args().collect::<Vec<_>>().join(" "),
        "working_directory": std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string()),
        "host": hostname(),
        "launcher": launch,
        "world_size": s.world,
        "backend": s.backend,
        "communicator": s.comm,
        "config_sha256": hex(&Sha256::digest(s.cfg.to_toml().as_bytes())),
        "dataset": s.ds.dir().display().to_string(),
        "dataset_manifest_sha256": crate::data::manifest::sha256_file(&s.ds.dir().join(crate::data::manifest::MANIFEST_FILE))
            .map_or_else(|e| format!("unreadable: {e}"), |(_, h)| h),
        "session_started_utc": now,
        "session_start_step": s.start_step,
    });
    let obj = p.as_object_mut().expect("object literal");
    let first = previous.get("started_utc").and_then(Value::as_str).map_or(now.clone(), str::to_string);
    obj.insert("started_utc".into(), Value::String(first));
    let resumes = previous.get("resumes").and_then(Value::as_u64).map_or(0, |n| n + u64::from(s.start_step > 0));
    obj.insert("resumes".into(), json!(resumes));
    let text = serde_json::to_string_pretty(&p).map_err(|e| crate::MfdError::other(e.to_string()))?;
    crate::data::binfile::write_atomic(&path, text.as_bytes())?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// Unix seconds as an ISO-8601 UTC time (days to civil date: the proleptic Gregorian calendar).
pub fn utc_string(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Read a run's provenance (None when absent or unreadable).
pub fn read(out: &Path) -> Option<Map<String, Value>> {
    let path = out.join(PROVENANCE_FILE);
    std::fs::read(&path).at(&path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_right() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_string(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(utc_string(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
