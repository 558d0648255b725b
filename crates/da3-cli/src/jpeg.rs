//! Detection of truncated JPEG files.
//!
//! The `image` crate decodes JPEGs leniently: a file cut short decodes with the missing part
//! filled in. Pillow, which the reference uses, refuses such files ("image file is
//! truncated"), even when only the final end-of-image marker is missing. [`is_truncated`] walks
//! the marker structure to find that marker.

/// Start of image.
const SOI: u8 = 0xD8;
/// End of image.
const EOI: u8 = 0xD9;
/// Start of scan: a segment followed by entropy-coded data.
const SOS: u8 = 0xDA;
/// Temporary marker, no payload.
const TEM: u8 = 0x01;

/// Whether `bytes` is a JPEG stream (starts with SOI) that ends before its end-of-image marker.
/// Anything that is not a JPEG, or whose structure is malformed in another way, gives `false`
/// (the decoder reports those). Bytes after the end-of-image marker are allowed.
pub fn is_truncated(bytes: &[u8]) -> bool {
    if bytes.len() < 2 || bytes[0] != 0xFF || bytes[1] != SOI {
        return false;
    }
    let mut pos = 2;
    loop {
        // A marker: 0xFF (any number of fill bytes), then the code.
        match bytes.get(pos) {
            None => return true,
            Some(0xFF) => {}
            Some(_) => return false,
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&code) = bytes.get(pos) else { return true };
        pos += 1;
        match code {
            EOI => return false,
            SOI | TEM | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let (Some(&hi), Some(&lo)) = (bytes.get(pos), bytes.get(pos + 1)) else { return true };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        if length < 2 {
            return false;
        }
        pos += length;
        if pos > bytes.len() {
            return true;
        }
        if code == SOS {
            match scan_end(bytes, pos) {
                Some(next) => pos = next,
                None => return true,
            }
        }
    }
}

/// The position of the marker that ends the entropy-coded data starting at `pos` (skipping
/// stuffed `FF 00` bytes and restart markers), `None` when the data runs to the end.
fn scan_end(bytes: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let ff = pos + bytes.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        match *bytes.get(ff + 1)? {
            0x00 | 0xD0..=0xD7 => pos = ff + 2,
            0xFF => pos = ff + 1,
            _ => return Some(ff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;

    fn jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x ^ y) * 9) as u8]));
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
        out
    }

    #[test]
    fn complete_files_pass() {
        let data = jpeg();
        assert!(!is_truncated(&data));
        let mut trailing = data.clone();
        trailing.extend_from_slice(b"trailer bytes \xFF\xD8");
        assert!(!is_truncated(&trailing));
    }

    #[test]
    fn cut_files_are_detected() {
        let data = jpeg();
        for keep in [data.len() - 1, data.len() - 2, data.len() / 2, 200, 20, 3, 2] {
            assert!(is_truncated(&data[..keep]), "first {keep} of {} bytes", data.len());
        }
    }

    #[test]
    fn an_embedded_thumbnail_does_not_count() {
        // An APP1 segment holding a complete JPEG (like an EXIF thumbnail), then the main image
        // cut short: the thumbnail's end-of-image marker is inside the segment.
        let (thumb, main) = (jpeg(), jpeg());
        let mut data = vec![0xFF, SOI, 0xFF, 0xE1];
        data.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        data.extend_from_slice(&thumb);
        data.extend_from_slice(&main[2..]);
        assert!(!is_truncated(&data));
        assert!(is_truncated(&data[..data.len() - 2]));
    }

    #[test]
    fn other_formats_are_left_to_the_decoder() {
        assert!(!is_truncated(b"\x89PNG\r\n\x1a\n"));
        assert!(!is_truncated(b""));
        assert!(!is_truncated(b"\xFF\xD8garbage"));
    }
}
