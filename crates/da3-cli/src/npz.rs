//! Minimal writer of NumPy `.npy` (format 1.0) and `.npz` files for float32 and uint8 arrays.
//!
//! An `.npz` is a zip archive holding one `NAME.npy` per array (what `np.savez_compressed`
//! writes); entries are deflate-compressed. Each `.npy` is: the magic `\x93NUMPY`, the version
//! bytes `1 0`, the header length as a little-endian u16, the header (a Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (S, H, W), }` padded with spaces and
//! ending in `\n` so that magic + version + length + header is a multiple of 64 bytes), then
//! the values as little-endian float32 in C (row-major) order.

use std::io::{self, Seek, Write};

/// The 6-byte magic string that starts every `.npy` file.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// `.npy` headers (preamble included) are padded to a multiple of this many bytes.
pub const NPY_ALIGN: usize = 64;

/// Bytes before the header dict: magic (6), version (2), header length (2).
const PREAMBLE_LEN: usize = 10;

/// One named float32 array to store in an `.npz`.
#[derive(Debug, Clone, Copy)]
pub struct NpzArray<'a> {
    /// Key in the archive (the entry is `NAME.npy`).
    pub name: &'a str,
    /// Shape, C order; the product must equal `data.len()`.
    pub shape: &'a [usize],
    /// Values in C (row-major) order.
    pub data: &'a [f32],
}

/// Formats a shape as a Python tuple: `()`, `(5,)`, `(2, 3)`.
fn shape_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// The complete `.npy` 1.0 preamble + header for a little-endian float32 array of `shape`.
///
/// The returned length is a multiple of [`NPY_ALIGN`]; the header ends with `\n`.
pub fn npy_header(shape: &[usize]) -> io::Result<Vec<u8>> {
    npy_header_for("<f4", shape)
}

/// [`npy_header`] for any numpy type string `descr` (`<f4`, `|u1`).
fn npy_header_for(descr: &str, shape: &[usize]) -> io::Result<Vec<u8>> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}", shape_tuple(shape));
    // dict + padding spaces + '\n', so that PREAMBLE_LEN + header is a multiple of NPY_ALIGN.
    let unpadded = PREAMBLE_LEN + dict.len() + 1;
    let header_len = dict.len() + 1 + (NPY_ALIGN - unpadded % NPY_ALIGN) % NPY_ALIGN;
    let len16 = u16::try_from(header_len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("npy header too long for format 1.0: shape {shape:?}")))?;
    let mut out = Vec::with_capacity(PREAMBLE_LEN + header_len);
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&len16.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(PREAMBLE_LEN + header_len - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

/// Writes one `.npy` file (header and little-endian float32 data) to `w`.
pub fn write_npy<W: Write>(w: &mut W, shape: &[usize], data: &[f32]) -> io::Result<()> {
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("shape {shape:?} holds {expected} values but {} were given", data.len()),
        ));
    }
    w.write_all(&npy_header(shape)?)?;
    let mut buf = Vec::with_capacity(4 * data.len().min(1 << 16));
    for chunk in data.chunks(1 << 16) {
        buf.clear();
        for v in chunk {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// The values of one array of a mixed-type `.npz` ([`write_npz_any`]).
#[derive(Clone, Copy)]
pub enum NpyData<'a> {
    /// float32 (`<f4`).
    F32(&'a [f32]),
    /// uint8 (`|u1`), e.g. images.
    U8(&'a [u8]),
    /// `len` values produced by `write` as little-endian bytes, in pieces, so that no whole
    /// copy of a derived array (rounded maps, mapped images) is held; `write` must write
    /// exactly `len` values.
    Written {
        /// The element type: [`ElementType::F32`] or [`ElementType::U8`].
        element: ElementType,
        /// Number of values.
        len: usize,
        /// Writes the values' bytes, in C order.
        write: &'a dyn Fn(&mut dyn Write) -> io::Result<()>,
    },
}

/// Element types of [`NpyData::Written`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// float32 (`<f4`).
    F32,
    /// uint8 (`|u1`).
    U8,
}

impl ElementType {
    fn descr(self) -> &'static str {
        match self {
            Self::F32 => "<f4",
            Self::U8 => "|u1",
        }
    }

    fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::U8 => 1,
        }
    }
}

impl std::fmt::Debug for NpyData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::F32(d) => write!(f, "F32({} values)", d.len()),
            Self::U8(d) => write!(f, "U8({} values)", d.len()),
            Self::Written { element, len, .. } => write!(f, "Written({element:?}, {len} values)"),
        }
    }
}

impl NpyData<'_> {
    fn element(&self) -> ElementType {
        match self {
            Self::F32(_) => ElementType::F32,
            Self::U8(_) => ElementType::U8,
            Self::Written { element, .. } => *element,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(d) => d.len(),
            Self::U8(d) => d.len(),
            Self::Written { len, .. } => *len,
        }
    }

    fn byte_len(&self) -> u64 {
        self.element().size() * self.len() as u64
    }
}

/// One named array of float32 or uint8 values to store in an `.npz`.
#[derive(Debug, Clone, Copy)]
pub struct NpyArray<'a> {
    /// Key in the archive (the entry is `NAME.npy`).
    pub name: &'a str,
    /// Shape, C order; the product must equal the number of values.
    pub shape: &'a [usize],
    /// Values in C (row-major) order.
    pub data: NpyData<'a>,
}

impl<'a> From<NpzArray<'a>> for NpyArray<'a> {
    fn from(a: NpzArray<'a>) -> Self {
        Self { name: a.name, shape: a.shape, data: NpyData::F32(a.data) }
    }
}

/// Writes one `.npy` file of float32 or uint8 values to `w`.
pub fn write_npy_any<W: Write>(w: &mut W, shape: &[usize], data: NpyData<'_>) -> io::Result<()> {
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("shape {shape:?} holds {expected} values but {} were given", data.len()),
        ));
    }
    match data {
        NpyData::F32(d) => write_npy(w, shape, d),
        NpyData::U8(d) => {
            w.write_all(&npy_header_for(data.element().descr(), shape)?)?;
            w.write_all(d)
        }
        NpyData::Written { element, write, .. } => {
            w.write_all(&npy_header_for(element.descr(), shape)?)?;
            let mut counted = CountingWriter { inner: w, bytes: 0 };
            write(&mut counted)?;
            if counted.bytes != data.byte_len() {
                return Err(io::Error::other(format!(
                    "internal error: {} bytes written for {} values of shape {shape:?}",
                    counted.bytes,
                    data.len()
                )));
            }
            Ok(())
        }
    }
}

/// A writer that counts the bytes passed through it.
struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The deflate level of every entry: 1, the compressor's fast path.
///
/// Why not zlib's default 6 (what `np.savez_compressed` uses): float32 maps hardly compress
/// (their mantissas leave few repeats), so a deeper match search costs time and saves nothing.
/// Measured once, with a throwaway program (not kept in `benches/`), on an 8-view
/// `results.npz` (`depth` and `conf`, 10.8 MB, 2026-11-24, Xeon): level 6 stored 87.1 % of the
/// bytes at 26 MB/s, level 1 87.1 % at 172 MB/s (miniz_oxide, the zip crate's deflate). At level 6 the archive was 6 % of a `da3 infer` run of 8 views
/// (`perf`, serial on the main thread, 0.4 s of 4.0 s).
const DEFLATE_LEVEL: i64 = 1;

/// Writes float32 `arrays` as a deflate-compressed `.npz` archive into `w` and returns `w`.
///
/// Names must be unique and non-empty; each becomes the entry `NAME.npy`.
pub fn write_npz<W: Write + Seek>(w: W, arrays: &[NpzArray<'_>]) -> io::Result<W> {
    let arrays: Vec<NpyArray<'_>> = arrays.iter().map(|&a| a.into()).collect();
    write_npz_any(w, &arrays)
}

/// [`write_npz`] for arrays of float32 and uint8 values (the `npz` export's `image`).
pub fn write_npz_any<W: Write + Seek>(w: W, arrays: &[NpyArray<'_>]) -> io::Result<W> {
    for (i, a) in arrays.iter().enumerate() {
        if a.name.is_empty() || a.name.contains('/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid npz key `{}`", a.name)));
        }
        if arrays[..i].iter().any(|b| b.name == a.name) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("duplicate npz key `{}`", a.name)));
        }
    }
    let mut zip = zip::ZipWriter::new(w);
    for a in arrays {
        let bytes = a.data.byte_len() + NPY_ALIGN as u64 * 4;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(DEFLATE_LEVEL))
            .large_file(bytes >= u32::MAX as u64);
        zip.start_file(format!("{}.npy", a.name), options).map_err(zip_err)?;
        write_npy_any(&mut zip, a.shape, a.data)?;
    }
    zip.finish().map_err(zip_err)
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_newline_terminated() {
        for shape in [vec![], vec![5], vec![2, 3], vec![1, 42, 56], vec![123456, 3, 4], vec![1; 20]] {
            let h = npy_header(&shape).unwrap();
            assert_eq!(h.len() % NPY_ALIGN, 0, "shape {shape:?}: length {}", h.len());
            assert_eq!(&h[..6], NPY_MAGIC);
            assert_eq!(&h[6..8], &[1, 0]);
            let hlen = u16::from_le_bytes([h[8], h[9]]) as usize;
            assert_eq!(hlen + 10, h.len());
            assert_eq!(*h.last().unwrap(), b'\n');
            // Only spaces between the dict's closing brace and the newline.
            let text = std::str::from_utf8(&h[10..]).unwrap();
            let close = text.rfind('}').unwrap();
            assert!(text[close + 1..text.len() - 1].bytes().all(|b| b == b' '));
        }
    }

    #[test]
    fn header_text_matches_numpy() {
        let h = npy_header(&[2, 3, 4]).unwrap();
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }"));
        assert_eq!(h.len(), 128); // 10 + 63-char dict + 1 > 64, so padded to 128 (as numpy does)
        let one = npy_header(&[7]).unwrap();
        assert!(std::str::from_utf8(&one[10..]).unwrap().contains("'shape': (7,), }"));
        let zero = npy_header(&[]).unwrap();
        assert!(std::str::from_utf8(&zero[10..]).unwrap().contains("'shape': (), }"));
    }

    #[test]
    fn npy_data_is_little_endian_after_header() {
        let mut out = Vec::new();
        write_npy(&mut out, &[2], &[1.5, -2.0]).unwrap();
        assert_eq!(out.len(), 128 + 8);
        assert_eq!(&out[128..132], &1.5f32.to_le_bytes());
        assert_eq!(&out[132..136], &(-2.0f32).to_le_bytes());
    }

    #[test]
    fn written_values_equal_stored_ones_and_are_counted() {
        let values = [1.5f32, -2.0, 0.25, 7.0, 8.0, 9.0];
        let mut stored = Vec::new();
        write_npy_any(&mut stored, &[2, 3], NpyData::F32(&values)).unwrap();
        let write = |w: &mut dyn Write| values.chunks(4).try_for_each(|c| c.iter().try_for_each(|v| w.write_all(&v.to_le_bytes())));
        let mut written = Vec::new();
        write_npy_any(&mut written, &[2, 3], NpyData::Written { element: ElementType::F32, len: 6, write: &write }).unwrap();
        assert_eq!(written, stored);
        // A writer that writes fewer (or more) bytes than its values is an error, not a
        // corrupt file.
        let short = |w: &mut dyn Write| w.write_all(&[0; 20]);
        let e = write_npy_any(&mut Vec::new(), &[2, 3], NpyData::Written { element: ElementType::F32, len: 6, write: &short }).unwrap_err();
        assert!(e.to_string().contains("20 bytes written for 6 values"), "{e}");
        let bytes = |w: &mut dyn Write| w.write_all(&[1, 2, 3]);
        let mut u8s = Vec::new();
        write_npy_any(&mut u8s, &[3], NpyData::Written { element: ElementType::U8, len: 3, write: &bytes }).unwrap();
        assert!(std::str::from_utf8(&u8s[10..64]).unwrap().contains("'descr': '|u1'") && u8s.ends_with(&[1, 2, 3]));
        assert!(write_npy_any(&mut Vec::new(), &[4], NpyData::Written { element: ElementType::U8, len: 3, write: &bytes }).is_err());
    }

    #[test]
    fn shape_mismatch_and_bad_keys_are_errors() {
        assert!(write_npy(&mut Vec::new(), &[2, 2], &[1.0; 3]).is_err());
        let a = NpzArray { name: "x", shape: &[1], data: &[0.0] };
        assert!(write_npz(io::Cursor::new(Vec::new()), &[a, a]).is_err());
        let bad = NpzArray { name: "", ..a };
        assert!(write_npz(io::Cursor::new(Vec::new()), &[bad]).is_err());
    }
}
