//! The data layer: synthetic data in real formats, input parsers, `mfd prepare`, and the memory-mapped
//! dataset readers that feed training.

pub mod binfile;
pub mod dataset;
pub mod fasta;
pub mod inspect;
pub mod manifest;
pub mod metadata;
pub mod motifs;
pub mod peak_store;
pub mod peaks;
pub mod prepare;
pub mod sampler;
pub mod synth;
pub mod tiles;
pub mod window;

use crate::error::{IoContext, MfdError, Result};
use std::path::Path;

/// Refuse what cannot be an input file, naming what it is: missing, a directory, or not a regular file (a FIFO
/// or device would block or never end).
pub fn check_input_file(path: &Path) -> Result<()> {
    let what = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
        Err(e) => return Err(MfdError::io(path, e)),
        Ok(m) if m.is_dir() => "is a directory, expected a file",
        Ok(m) if !m.is_file() => "is not a regular file (a FIFO, socket or device?)",
        Ok(_) => return Ok(()),
    };
    Err(MfdError::input(path, None, None, what))
}

/// A whole text input: regular file, UTF-8 (the error names the line of the first bad byte), without a leading
/// UTF-8 byte-order mark (which would otherwise stick, invisibly, to the first field).
pub fn read_text_input(path: &Path) -> Result<String> {
    check_input_file(path)?;
    let bytes = std::fs::read(path).at(path)?;
    text_from_bytes(path, bytes)
}

/// `bytes` as text (see `read_text_input`).
pub fn text_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<String> {
    match String::from_utf8(bytes) {
        Ok(s) => Ok(match s.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => s,
        }),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            Err(MfdError::input(path, Some(line), None, "not UTF-8 text (a binary or compressed file?)"))
        }
    }
}

/// An output path whose parent directories can be created: no existing ancestor is a regular file.
pub fn check_out_parent(out: &Path) -> Result<()> {
    for a in out.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
        if let Ok(m) = std::fs::metadata(a) {
            if m.is_dir() {
                return Ok(());
            }
            return Err(MfdError::input(
                out,
                None,
                None,
                format!("cannot create it: {} is a file, not a directory", a.display()),
            ));
        }
    }
    Ok(())
}
