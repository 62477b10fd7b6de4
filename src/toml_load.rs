//! The one TOML loader: every TOML input (run config, sweep, metadata mapping, prepare config, dataset manifest)
//! is parsed into its typed struct here, and a parse or type error becomes an `MfdError` naming the file, the
//! 1-based line and the key at fault.
//!
//! Key decision: the line is counted from the error's byte offset (newlines before it, plus one), so an error that
//! starts a line (an unknown key) is reported on that line, not the one before.

use crate::error::{MfdError, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Longest message kept from the TOML library (a message can echo a whole offending value).
const MAX_MESSAGE: usize = 240;

/// Parse `text`, read from `source`, into `T`.
pub fn parse<T: DeserializeOwned>(text: &str, source: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| error(text, source, &e))
}

/// 1-based line of byte offset `at` in `text`.
pub fn line_at(text: &str, at: usize) -> u64 {
    let at = at.min(text.len());
    text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// The error `e` from parsing `text` (read from `source`) as file, line, key and a clipped message.
pub fn error(text: &str, source: &Path, e: &toml::de::Error) -> MfdError {
    let start = e.span().map(|s| s.start);
    let key = error_keys(e).or_else(|| start.and_then(|at| key_at(text, at)));
    MfdError::input(source, start.map(|at| line_at(text, at)), key.as_deref(), clip(e.message()))
}

/// The dotted key the library attached to `e` (its display without the input ends with "in `a.b`").
fn error_keys(e: &toml::de::Error) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let last = shown.trim_end().lines().last()?;
    let keys = last.strip_prefix("in `")?.strip_suffix('`')?;
    (!keys.is_empty()).then(|| keys.to_string())
}

/// The dotted key written on the line holding byte `at`: the table header itself, or the enclosing header's name
/// joined to the key left of `=`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        let inner = l.strip_prefix("[[").and_then(|r| r.split("]]").next());
        let inner = inner.or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))?;
        Some(inner.trim().to_string())
    };
    if line.starts_with('[') {
        return header(line).filter(|h| !h.is_empty());
    }
    let (k, _) = line.split_once('=')?;
    let k = k.trim().trim_matches('"');
    if k.is_empty() || k.len() > 100 {
        return None;
    }
    let table = text[..line_start].lines().rev().find(|l| l.trim_start().starts_with('[')).and_then(header);
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{k}"),
        _ => k.to_string(),
    })
}

/// At most `MAX_MESSAGE` characters of `msg`, on one line.
fn clip(msg: &str) -> String {
    crate::error::clip(&msg.trim().replace('\n', "; "), MAX_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: u32,
        t: Inner,
    }

    fn err(text: &str) -> String {
        parse::<Doc>(text, Path::new("x.toml")).unwrap_err().to_string()
    }

    #[test]
    fn line_numbers_are_one_based_from_the_error_offset() {
        assert_eq!(line_at("", 0), 1);
        assert_eq!(line_at("a\nb\n", 2), 2);
        assert_eq!(line_at("a\nb\n", 99), 3);
        // Unknown key starting line 3 (the off-by-one of counting `lines()` before it), a type error inside line 3,
        // a syntax error on line 2.
        let e = err("a = 1\n[t]\nbogus = 2\nn = 1\n");
        assert!(e.starts_with("x.toml:3 ") && e.contains("bogus"), "{e}");
        let e = err("a = 1\n[t]\nn = \"two\"\n");
        assert!(e.starts_with("x.toml:3 [field t.n]"), "{e}");
        let e = err("a = 1\n[t\nn = 1\n");
        assert!(e.starts_with("x.toml:2"), "{e}");
        // A long offending value is clipped.
        let e = err(&format!("a = \"{}\"\n[t]\nn = 1\n", "v".repeat(5000)));
        assert!(e.starts_with("x.toml:1 [field a]") && e.len() < 400, "{e}");
    }

    /// `text` with `line` inserted after the first line equal to `after`; returns it and the new line's number.
    fn insert_after(text: &str, after: &str, line: &str) -> (String, u64) {
        let at = text.lines().position(|l| l == after).unwrap() + 1;
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(at, line);
        (lines.join("\n") + "\n", at as u64 + 1)
    }

    /// Each TOML input names the file, the line of an unknown key that starts a line, and the key.
    #[test]
    fn every_loader_names_the_line_and_key_of_a_bad_key() {
        use crate::config::{Config, DEFAULT_CONFIG};
        use crate::model::metadata::{MappingConfig, DEFAULT_MAPPING};
        let check = |e: String, file: &str, line: u64, key: &str| {
            assert!(e.starts_with(&format!("{file}:{line} ")) && e.contains(key), "want {file}:{line} {key}: {e}");
        };
        let (text, line) = insert_after(DEFAULT_CONFIG, "[train]", "bogus_key = 1");
        check(Config::parse(&text, Path::new("run.toml"), &[]).unwrap_err().to_string(), "run.toml", line, "bogus_key");
        // A type error in the file (deserialised after the overrides) names its line and key too.
        let text = DEFAULT_CONFIG.replacen("\nepochs = ", "\nepochs = \"many\" #", 1);
        let line = text.lines().position(|l| l.starts_with("epochs")).unwrap() as u64 + 1;
        let e = Config::parse(&text, Path::new("run.toml"), &["model.c=8".into()]).unwrap_err().to_string();
        check(e, "run.toml", line, "train.epochs");
        let (text, line) = insert_after(DEFAULT_MAPPING, "[biological]", "bogus_key = 1");
        check(
            MappingConfig::parse(&text, Path::new("map.toml")).unwrap_err().to_string(),
            "map.toml",
            line,
            "bogus_key",
        );
        let sweep = "base = \"default\"\n\n[[point]]\nset = []\nbogus_key = 1\n";
        let e = crate::sweep::config::Sweep::parse(sweep, Path::new("sw.toml"), &[], None).unwrap_err().to_string();
        check(e, "sw.toml", 5, "bogus_key");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prep.toml");
        std::fs::write(&p, "min_overlap = 64\n# a comment\nbogus_key = 1\n").unwrap();
        let e = crate::data::prepare::PrepareConfig::load(&p).unwrap_err().to_string();
        check(e, &p.display().to_string(), 3, "bogus_key");
        // The manifest: data/manifest.rs `load_errors_name_the_right_line`.
    }
}
