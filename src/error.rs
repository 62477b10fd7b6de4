//! The library's error type. Bad input never panics: it becomes an `MfdError` that names the file, the line
//! (1-based, when the input is text) and the field at fault, so the CLI can print one actionable message.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an input a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line number, when the input is line-oriented text.
    pub line: Option<u64>,
    /// Column or field name (e.g. "chromEnd", "Library_lab", "header.magic").
    pub field: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " [field {}]", short(field))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MfdError {
    /// Malformed or inconsistent user input (text or binary), with its location.
    #[error("{loc}: {msg}")]
    Input { loc: Location, msg: String },
    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An invalid configuration value (`key` is the dotted TOML key).
    #[error("config {key}: {msg}")]
    Config { key: String, msg: String },
    /// Shapes that do not fit together (op name and the shapes involved).
    #[error("{op}: shape mismatch: {msg}")]
    Shape { op: &'static str, msg: String },
    /// Anything else, with a message that says what to do.
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, MfdError>;

impl MfdError {
    /// An input error at `file:line [field]`.
    pub fn input(file: impl AsRef<Path>, line: Option<u64>, field: Option<&str>, msg: impl Into<String>) -> Self {
        MfdError::Input {
            loc: Location { file: file.as_ref().to_path_buf(), line, field: field.map(str::to_string) },
            msg: msg.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        MfdError::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn config(key: impl Into<String>, msg: impl Into<String>) -> Self {
        MfdError::Config { key: key.into(), msg: msg.into() }
    }

    pub fn other(msg: impl Into<String>) -> Self {
        MfdError::Other(msg.into())
    }
}

/// An offending value as an error message shows it: at most 60 characters, the length said when cut.
pub fn short(s: &str) -> String {
    clip(s, 60)
}

/// At most `max` characters of `s`, the length said when cut (so an echoed input never floods the error line).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    format!("{}... ({} characters)", s.chars().take(max).collect::<String>(), s.chars().count())
}

/// Attach a path to a `std::io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| MfdError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_and_fields_are_clipped() {
        assert_eq!(short("abc"), "abc");
        let s = short(&"é".repeat(1000));
        assert!(s.starts_with(&"é".repeat(60)) && s.ends_with("... (1000 characters)"), "{s}");
        let e = MfdError::input("f.tsv", Some(3), Some(&"h".repeat(5000)), "not a number").to_string();
        assert!(e.starts_with("f.tsv:3 [field hhh") && e.len() < 120, "{e}");
    }
}
