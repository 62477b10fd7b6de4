//! Self-describing binary arrays: a 64-byte header followed by little-endian data, memory-mapped on read.
//!
//! Header layout (all little-endian):
//! ```text
//! offset  size  field
//!      0     8  magic    b"MFDARRAY"
//!      8     4  version  u32 (= 1)
//!     12     4  dtype    u32 (see `DType`)
//!     16     4  ndim     u32 (1..=4)
//!     20     4  reserved u32 (= 0)
//!     24    32  shape    4 x u64 (unused dims = 1)
//!     56     8  kind     ASCII tag, NUL padded (e.g. "genome", "tiles", "labels")
//!     64     …  data     prod(shape) * dtype.size() bytes
//! ```
//! On open the header is checked against the expected kind and dtype and against the file length, so a
//! truncated or foreign file is an error naming the file and the field, never a panic or a silent misread.
//! Writes go to `<path>.tmp` and are renamed into place only when complete (`BinWriter::finish`).

use crate::error::{IoContext, MfdError, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"MFDARRAY";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DType {
    U8 = 0,
    U32 = 1,
    U64 = 2,
    F32 = 3,
    I32 = 4,
    F64 = 5,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::U32 | DType::F32 | DType::I32 => 4,
            DType::U64 | DType::F64 => 8,
        }
    }
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => DType::U8,
            1 => DType::U32,
            2 => DType::U64,
            3 => DType::F32,
            4 => DType::I32,
            5 => DType::F64,
            _ => return None,
        })
    }
}

/// Element types that can be viewed from a mapped array.
pub trait Element: bytemuck::Pod {
    const DTYPE: DType;
}
impl Element for u8 {
    const DTYPE: DType = DType::U8;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}
impl Element for u64 {
    const DTYPE: DType = DType::U64;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for f64 {
    const DTYPE: DType = DType::F64;
}

fn kind_tag(kind: &str) -> [u8; 8] {
    assert!(kind.len() <= 8 && kind.is_ascii(), "binfile kind tag must be <= 8 ASCII bytes: {kind}");
    let mut t = [0u8; 8];
    t[..kind.len()].copy_from_slice(kind.as_bytes());
    t
}

/// Little-endian u32 / u64 at `off` of the (length-checked) header.
fn le_u32(h: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]])
}

fn le_u64(h: &[u8], off: usize) -> u64 {
    (le_u32(h, off) as u64) | ((le_u32(h, off + 4) as u64) << 32)
}

fn encode_header(dtype: DType, shape: &[u64], kind: &str) -> [u8; HEADER_LEN] {
    assert!((1..=4).contains(&shape.len()), "binfile ndim must be 1..=4");
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(dtype as u32).to_le_bytes());
    h[16..20].copy_from_slice(&(shape.len() as u32).to_le_bytes());
    for i in 0..4 {
        let d = shape.get(i).copied().unwrap_or(1);
        h[24 + 8 * i..32 + 8 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[56..64].copy_from_slice(&kind_tag(kind));
    h
}

/// A read-only, memory-mapped array file whose header has been checked.
#[derive(Debug)]
pub struct BinFile {
    path: PathBuf,
    map: Mmap,
    dtype: DType,
    shape: Vec<u64>,
}

impl BinFile {
    /// Open `path`, check magic, version, kind, dtype and that the length equals header + data.
    pub fn open(path: impl AsRef<Path>, kind: &str, dtype: DType) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let bad = |field: &str, msg: String| MfdError::input(path, None, Some(field), msg);
        if len < HEADER_LEN as u64 {
            return Err(bad(
                "header",
                format!("file is {len} bytes, shorter than the {HEADER_LEN}-byte header; HINT: truncated or not an mfd array file, re-run `mfd prepare`"),
            ));
        }
        // SAFETY: the file is opened read-only; datasets are written once (temp + rename) and never modified in place.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        let h = &map[..HEADER_LEN];
        if &h[0..8] != MAGIC {
            return Err(bad("header.magic", "not an mfd array file (bad magic); HINT: re-run `mfd prepare`".into()));
        }
        let version = le_u32(h, 8);
        if version != VERSION {
            return Err(bad("header.version", format!("version {version}, this build reads version {VERSION}")));
        }
        let got_kind = &h[56..64];
        if got_kind != kind_tag(kind) {
            let shown = String::from_utf8_lossy(got_kind).trim_end_matches('\0').to_string();
            return Err(bad("header.kind", format!("holds '{shown}', expected '{kind}'")));
        }
        let got_dtype = DType::from_u32(le_u32(h, 12));
        if got_dtype != Some(dtype) {
            return Err(bad("header.dtype", format!("dtype {got_dtype:?}, expected {dtype:?}")));
        }
        let ndim = le_u32(h, 16) as usize;
        if !(1..=4).contains(&ndim) {
            return Err(bad("header.ndim", format!("ndim {ndim} outside 1..=4")));
        }
        let shape: Vec<u64> = (0..ndim).map(|i| le_u64(h, 24 + 8 * i)).collect();
        let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let want = n.and_then(|n| n.checked_mul(dtype.size() as u64)).and_then(|b| b.checked_add(HEADER_LEN as u64));
        if want != Some(len) {
            let need = want.map_or("more than 2^64".to_string(), |w| w.to_string());
            let what = if want.is_some_and(|w| w > len) { "truncated" } else { "size does not match its header" };
            return Err(bad(
                "header.shape",
                format!("{what}: shape {shape:?} needs {need} bytes, the file has {len}; HINT: re-run `mfd prepare`"),
            ));
        }
        Ok(BinFile { path: path.to_path_buf(), map, dtype, shape })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The data as a typed slice (the dtype was checked on open; the data starts 64 bytes into a page-aligned map).
    pub fn data<T: Element>(&self) -> Result<&[T]> {
        if T::DTYPE != self.dtype {
            return Err(MfdError::input(
                &self.path,
                None,
                Some("header.dtype"),
                format!("viewed as {:?}, holds {:?}", T::DTYPE, self.dtype),
            ));
        }
        bytemuck::try_cast_slice(&self.map[HEADER_LEN..])
            .map_err(|e| MfdError::input(&self.path, None, None, format!("cannot view data: {e}")))
    }

    /// Raw data bytes (after the header).
    pub fn bytes(&self) -> &[u8] {
        &self.map[HEADER_LEN..]
    }
}

/// Streaming writer: writes `<path>.tmp`, then `finish` fixes the header's shape, syncs and renames atomically.
/// Dropping an unfinished writer removes the temp file, so a failure never leaves a valid-looking array.
pub struct BinWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    dtype: DType,
    kind: String,
    written: u64,
}

impl BinWriter {
    pub fn create(path: impl AsRef<Path>, kind: &str, dtype: DType) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let tmp = tmp_path(&path);
        let file = File::create(&tmp).at(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&encode_header(dtype, &[0], kind)).at(&tmp)?;
        Ok(BinWriter { path, tmp, out: Some(out), dtype, kind: kind.to_string(), written: 0 })
    }

    /// Append elements.
    pub fn write<T: Element>(&mut self, data: &[T]) -> Result<()> {
        assert_eq!(T::DTYPE, self.dtype, "BinWriter dtype mismatch (programming error)");
        let out = self.out.as_mut().expect("BinWriter used after finish");
        out.write_all(bytemuck::cast_slice(data)).at(&self.tmp)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Elements written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Write the final header with `shape` (its product must equal the elements written) and rename into place.
    pub fn finish(mut self, shape: &[u64]) -> Result<()> {
        let n: u64 = shape.iter().product();
        if n != self.written {
            return Err(MfdError::other(format!(
                "{}: shape {shape:?} holds {n} elements but {} were written",
                self.path.display(),
                self.written
            )));
        }
        let Some(mut out) = self.out.take() else {
            return Err(MfdError::other(format!("{}: BinWriter finished twice", self.path.display())));
        };
        let res = (|| {
            out.flush().at(&self.tmp)?;
            let mut file = out.into_inner().map_err(|e| MfdError::io(&self.tmp, e.into_error()))?;
            file.seek(SeekFrom::Start(0)).at(&self.tmp)?;
            file.write_all(&encode_header(self.dtype, shape, &self.kind)).at(&self.tmp)?;
            file.sync_all().at(&self.tmp)?;
            drop(file);
            std::fs::rename(&self.tmp, &self.path).at(&self.path)
        })();
        if res.is_err() {
            // A full disk while finishing leaves no temporary file behind either.
            let _ = std::fs::remove_file(&self.tmp);
        }
        res
    }
}

impl Drop for BinWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `<path>.tmp` beside `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Write a whole array at once (atomic).
pub fn write_array<T: Element>(path: impl AsRef<Path>, kind: &str, shape: &[u64], data: &[T]) -> Result<()> {
    let mut w = BinWriter::create(path, kind, T::DTYPE)?;
    w.write(data)?;
    w.finish(shape)
}

/// Write bytes to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, path).at(path)
    })();
    if res.is_err() {
        // A full disk or a bad target leaves no temporary file behind.
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_array(&p, "tiles", &[2, 3], &[1u32, 2, 3, 4, 5, 6]).unwrap();
        let f = BinFile::open(&p, "tiles", DType::U32).unwrap();
        assert_eq!(f.shape(), &[2, 3]);
        assert_eq!(f.data::<u32>().unwrap(), &[1, 2, 3, 4, 5, 6]);
        // wrong kind / dtype
        assert!(BinFile::open(&p, "labels", DType::U32).unwrap_err().to_string().contains("header.kind"));
        assert!(BinFile::open(&p, "tiles", DType::U8).unwrap_err().to_string().contains("header.dtype"));
        // truncated
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(BinFile::open(&p, "tiles", DType::U32).unwrap_err().to_string().contains("truncated"));
        // foreign
        std::fs::write(&p, b"hello, this is not an array file at all, padded to be long enough....").unwrap();
        assert!(BinFile::open(&p, "tiles", DType::U32).unwrap_err().to_string().contains("magic"));
    }

    #[test]
    fn unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        {
            let mut w = BinWriter::create(&p, "genome", DType::U8).unwrap();
            w.write(&[1u8, 2, 3]).unwrap();
        }
        assert!(!p.exists());
        assert!(!tmp_path(&p).exists());
        // A finish that fails (the target is a non-empty directory: the rename fails) removes its temp file.
        let d = dir.path().join("c.bin");
        std::fs::create_dir_all(d.join("x")).unwrap();
        let mut w = BinWriter::create(&d, "genome", DType::U8).unwrap();
        w.write(&[1u8]).unwrap();
        assert!(w.finish(&[1]).is_err());
        assert!(!tmp_path(&d).exists());
        // So does write_atomic.
        assert!(write_atomic(&d, b"x").is_err());
        assert!(!tmp_path(&d).exists());
    }
}
