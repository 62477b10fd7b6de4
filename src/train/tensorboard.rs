//! TensorBoard event files with scalar summaries, written without TensorFlow: a file
//! `events.out.tfevents.<unix secs>.<host>` of TFRecord records, each a hand-encoded protobuf `Event`.
//!
//! TFRecord framing of one record: length (u64 LE), masked CRC-32C of those 8 bytes (u32 LE), the data, masked
//! CRC-32C of the data (u32 LE); mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The `Event` fields used:
//! wall_time (1, double), step (2, int64), file_version (3, string; the first record's "brain.Event:2") and summary
//! (5), whose `Summary.Value` has tag (1, string) and simple_value (2, float).
//!
//! TensorBoard reads the file while it grows, so it is appended to in place rather than written atomically: a
//! record cut short by a crash fails its length or CRC check and readers stop there.

use crate::error::{IoContext, MfdError, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) lookup table, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| CRC32C_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

/// The TFRecord mask of a CRC (so that CRCs of data holding CRCs stay well distributed).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field key: (field number << 3) | wire type (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit).
fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One `Event`: wall time, step, and either the file version or one scalar summary value.
fn event(wall_time: f64, step: i64, file_version: Option<&str>, scalar: Option<(&str, f32)>) -> Vec<u8> {
    let mut e = Vec::with_capacity(64);
    put_key(&mut e, 1, 1);
    e.extend_from_slice(&wall_time.to_le_bytes());
    put_key(&mut e, 2, 0);
    put_varint(&mut e, step as u64);
    if let Some(v) = file_version {
        put_bytes(&mut e, 3, v.as_bytes());
    }
    if let Some((tag, value)) = scalar {
        let mut val = Vec::with_capacity(tag.len() + 8);
        put_bytes(&mut val, 1, tag.as_bytes());
        put_key(&mut val, 2, 5);
        val.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::with_capacity(val.len() + 4);
        put_bytes(&mut summary, 1, &val);
        put_bytes(&mut e, 5, &summary);
    }
    e
}

/// One TFRecord around `data`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    r
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// This machine's name for the file name: letters, digits, '-', '_' and '.', else "localhost".
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(64).collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Appends scalar summaries to a new TensorBoard event file.
pub struct TbWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl TbWriter {
    /// A new event file `events.out.tfevents.<unix secs>.<host>` in `dir` (created if missing; a name already
    /// taken, by a second writer in the same second, gets a `.1`, `.2`... suffix), starting with the version record.
    pub fn create(dir: &Path) -> Result<TbWriter> {
        std::fs::create_dir_all(dir).at(dir)?;
        let wall = now_secs();
        let base = format!("events.out.tfevents.{}.{}", wall as u64, host_name());
        let mut n = 0;
        let (path, file) = loop {
            let name = if n == 0 { base.clone() } else { format!("{base}.{n}") };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(MfdError::io(&path, e)),
            }
        };
        let mut w = TbWriter { path, out: BufWriter::new(file) };
        w.write_event(&event(wall, 0, Some("brain.Event:2"), None))?;
        w.flush()?;
        Ok(w)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the scalar `value` of `tag` (e.g. "train/loss") at `step`, stamped with the current time. TensorBoard
    /// stores scalars as f32, so `value` is rounded to f32.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<()> {
        let step = i64::try_from(step)
            .map_err(|_| MfdError::input(&self.path, None, Some("step"), format!("step {step} exceeds int64")))?;
        self.write_event(&event(now_secs(), step, None, Some((tag, value as f32))))
    }

    /// Writes the buffered records to the file (TensorBoard sees them from then on).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().at(&self.path)
    }

    fn write_event(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(&record(data)).at(&self.path)
    }
}

impl Drop for TbWriter {
    fn drop(&mut self) {
        // Best effort: `flush` is the call that reports errors.
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    /// A decoded event: (wall_time, step, file_version, [(tag, simple_value)]).
    type Decoded = (f64, i64, Option<String>, Vec<(String, f32)>);

    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*i];
            *i += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// (field, wire type, payload) of every field of one message; varints as their 8 LE bytes.
    fn fields(b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        let mut i = 0;
        let mut out = vec![];
        while i < b.len() {
            let key = varint(b, &mut i);
            let (field, wire) = (key >> 3, key & 7);
            let payload = match wire {
                0 => varint(b, &mut i).to_le_bytes().to_vec(),
                1 => {
                    i += 8;
                    b[i - 8..i].to_vec()
                }
                2 => {
                    let n = varint(b, &mut i) as usize;
                    i += n;
                    b[i - n..i].to_vec()
                }
                5 => {
                    i += 4;
                    b[i - 4..i].to_vec()
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, wire, payload));
        }
        out
    }

    /// Reads every record of an event file, checking both CRCs, and decodes the events.
    fn read_events(path: &Path) -> Vec<Decoded> {
        let b = std::fs::read(path).unwrap();
        let mut i = 0;
        let mut out = vec![];
        while i < b.len() {
            let len_bytes = &b[i..i + 8];
            let n = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            assert_eq!(u32::from_le_bytes(b[i + 8..i + 12].try_into().unwrap()), masked_crc32c(len_bytes));
            let data = &b[i + 12..i + 12 + n];
            assert_eq!(u32::from_le_bytes(b[i + 12 + n..i + 16 + n].try_into().unwrap()), masked_crc32c(data));
            i += 16 + n;
            let mut ev: Decoded = (0.0, 0, None, vec![]);
            for (field, wire, p) in fields(data) {
                match (field, wire) {
                    (1, 1) => ev.0 = f64::from_le_bytes(p.try_into().unwrap()),
                    (2, 0) => ev.1 = u64::from_le_bytes(p.try_into().unwrap()) as i64,
                    (3, 2) => ev.2 = Some(String::from_utf8(p).unwrap()),
                    (5, 2) => {
                        for (f, w, value) in fields(&p) {
                            assert_eq!((f, w), (1, 2), "Summary.value");
                            let (mut tag, mut v) = (String::new(), f32::NAN);
                            for (g, w, q) in fields(&value) {
                                match (g, w) {
                                    (1, 2) => tag = String::from_utf8(q).unwrap(),
                                    (2, 5) => v = f32::from_le_bytes(q.try_into().unwrap()),
                                    other => panic!("Summary.Value field {other:?}"),
                                }
                            }
                            ev.3.push((tag, v));
                        }
                    }
                    other => panic!("Event field {other:?}"),
                }
            }
            out.push(ev);
        }
        out
    }

    #[test]
    fn written_events_decode_back() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tb");
        let mut w = TbWriter::create(&sub).unwrap();
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents.") && !name.ends_with('.'), "{name}");
        w.scalar("train/loss", 1, 0.75).unwrap();
        w.scalar("val/macro_auroc", 300, 0.875).unwrap();
        w.scalar("lr", 1 << 40, 1e-3).unwrap();
        w.flush().unwrap();
        // A second writer in the same second gets a file of its own.
        let w2 = TbWriter::create(&sub).unwrap();
        assert_ne!(w2.path(), w.path());
        let ev = read_events(w.path());
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0].2.as_deref(), Some("brain.Event:2"));
        assert!(ev[0].3.is_empty() && ev[0].0 > 1.6e9);
        let got: Vec<(i64, String, f32)> = ev[1..].iter().map(|e| (e.1, e.3[0].0.clone(), e.3[0].1)).collect();
        assert_eq!(
            got,
            vec![
                (1, "train/loss".into(), 0.75),
                (300, "val/macro_auroc".into(), 0.875),
                (1 << 40, "lr".into(), 1e-3f32)
            ]
        );
        assert!(ev.windows(2).all(|p| p[1].0 >= p[0].0), "wall times go forward");
        assert!(w.scalar("x", u64::MAX, 1.0).unwrap_err().to_string().contains("int64"));
    }

    #[test]
    fn create_names_the_path_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let e = TbWriter::create(&file.join("tb")).err().expect("a file as a parent directory");
        assert!(e.to_string().contains("plain"), "{e}");
    }

    /// Writes a demo event file for TensorBoard's own reader (bench/check_tensorboard.py):
    /// `MFD_TB_DEMO=/tmp/tb cargo test --lib tensorboard::tests::demo -- --ignored`.
    #[test]
    #[ignore = "writes a demo event file for TensorBoard's reader; run by hand (see the doc comment)"]
    fn demo() {
        let dir = PathBuf::from(std::env::var("MFD_TB_DEMO").unwrap_or_else(|_| "/tmp/mfd-tb-demo".into()));
        let mut w = TbWriter::create(&dir).unwrap();
        for step in 0..100u64 {
            w.scalar("train/loss", step, 1.0 / (1.0 + step as f64)).unwrap();
            if step % 10 == 9 {
                w.scalar("val/macro_auroc", step, 0.5 + step as f64 / 250.0).unwrap();
            }
        }
        w.flush().unwrap();
        println!("{}", w.path().display());
    }
}
