//! JPEG decoding identical to Pillow's (what the reference reads images with), and the
//! detection of truncated JPEG files.
//!
//! Pillow decodes JPEG with libjpeg-turbo; [`decode`] runs the same libjpeg decoder (the
//! `mozjpeg` crate's bundled libjpeg-turbo fork, plain C build) with Pillow's settings, so its
//! samples are bit-exact with `Image.open(path).convert("RGB")` for baseline, progressive,
//! arithmetic-coded and restart-marker files at every chroma subsampling (tests/jpeg_pillow.rs
//! checks fixtures made by tools/golden/jpeg.py). Like Pillow it picks the layout from the
//! number of components: 1 is grayscale, 3 is RGB (libjpeg converts YCbCr), 4 is CMYK (libjpeg
//! converts YCCK), inverted as Pillow always does ("Adobe conventions") and converted to RGB
//! with Pillow's formula ([`pillow_cmyk_to_rgb`]). The EXIF orientation is not applied
//! (neither Pillow's `open` nor the reference applies it).
//!
//! Pillow refuses a file cut short ("image file is truncated"), even when only the final
//! end-of-image marker is missing, where libjpeg would fill in the missing part with a
//! warning. [`is_truncated`] walks the marker structure to find that marker.

use image::{DynamicImage, GrayImage, Limits, RgbImage};
use mozjpeg::{ColorSpace, Decompress};

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

/// Decodes the JPEG file `bytes` as Pillow's `Image.open(...)` does: a grayscale file gives
/// [`DynamicImage::ImageLuma8`], every other one [`DynamicImage::ImageRgb8`] (CMYK converted
/// as Pillow's `convert("RGB")` does). Refuses images whose declared sides are over the
/// `limits`' maximum width/height or whose decoded samples would need more than its
/// `max_alloc` bytes, before decoding any pixel. libjpeg's errors (corrupt data, unsupported
/// bit depths) come back as `Err` with libjpeg's message, never as a panic. Truncation is not
/// checked here: call [`is_truncated`] first.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<DynamicImage, String> {
    // The mozjpeg crate reports libjpeg's fatal errors by unwinding out of its error callback
    // (mozjpeg-sys `unwinding`, without running the panic hook): catch that here.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_unwinding(bytes, limits))) {
        Ok(result) => result,
        Err(payload) => Err(panic_message(payload.as_ref())),
    }
}

/// The `(width, height)` a JPEG file declares, read by libjpeg (the decoder [`decode`] uses)
/// up to its first scan, without decoding pixels. Errors carry libjpeg's message.
pub fn dimensions(path: &std::path::Path) -> Result<(u32, u32), String> {
    let read = || -> Result<(u32, u32), String> {
        let decompress = Decompress::new_path(path).map_err(|e| format!("libjpeg: {e}"))?;
        let (w, h) = decompress.size();
        Ok((w as u32, h as u32))
    };
    match std::panic::catch_unwind(read) {
        Ok(result) => result,
        Err(payload) => Err(panic_message(payload.as_ref())),
    }
}

/// [`decode`], with libjpeg's fatal errors unwinding.
fn decode_unwinding(bytes: &[u8], limits: &Limits) -> Result<DynamicImage, String> {
    let io = |e: std::io::Error| format!("libjpeg: {e}");
    let decompress = Decompress::new_mem(bytes).map_err(io)?;
    let (width, height) = decompress.size();
    let channels = decompress.components().len();
    check_limits(width, height, channels, limits)?;
    let (w, h) = (width as u32, height as u32);
    let too_large = || format!("the image's {width}x{height} size does not fit in memory");
    match channels {
        1 => {
            let mut started = decompress.grayscale().map_err(io)?;
            let samples: Vec<u8> = started.read_scanlines().map_err(io)?;
            started.finish().map_err(io)?;
            GrayImage::from_raw(w, h, samples).map(DynamicImage::ImageLuma8).ok_or_else(too_large)
        }
        3 => {
            let mut started = decompress.rgb().map_err(io)?;
            let samples: Vec<u8> = started.read_scanlines().map_err(io)?;
            started.finish().map_err(io)?;
            RgbImage::from_raw(w, h, samples).map(DynamicImage::ImageRgb8).ok_or_else(too_large)
        }
        4 => {
            // libjpeg converts YCCK to CMYK; Pillow reads every CMYK JPEG inverted.
            let mut started = decompress.to_colorspace(ColorSpace::JCS_CMYK).map_err(io)?;
            let cmyk: Vec<[u8; 4]> = started.read_scanlines().map_err(io)?;
            started.finish().map_err(io)?;
            let rgb = cmyk.iter().flat_map(|&[c, m, y, k]| pillow_cmyk_to_rgb([!c, !m, !y, !k])).collect();
            RgbImage::from_raw(w, h, rgb).map(DynamicImage::ImageRgb8).ok_or_else(too_large)
        }
        n => Err(format!("JPEG images with {n} components are not supported (1, 3 or 4)")),
    }
}

/// Refuses a `width × height` image of `channels` 8-bit samples per pixel over `limits`.
fn check_limits(width: usize, height: usize, channels: usize, limits: &Limits) -> Result<(), String> {
    let over = |side: usize, max: Option<u32>| max.is_some_and(|m| side as u64 > u64::from(m));
    if over(width, limits.max_image_width) || over(height, limits.max_image_height) {
        return Err(format!("the image's {width}x{height} size is over the decoder's limits"));
    }
    let bytes = (width as u64).saturating_mul(height as u64).saturating_mul(channels.max(3) as u64);
    if limits.max_alloc.is_some_and(|max| bytes > max) {
        return Err(format!("decoding the {width}x{height} image needs {bytes} bytes, over the decoder's limit"));
    }
    Ok(())
}

/// Pillow's CMYK → RGB conversion (`cmyk2rgb` in libImaging/Convert.c): with `nk = 255 - k`,
/// each channel is `nk - round(x * nk / 255)` (Pillow's `MULDIV255` rounding).
pub fn pillow_cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let nk = 255 - u32::from(k);
    let muldiv255 = |a: u8| {
        let t = u32::from(a) * nk + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|x| (nk - muldiv255(x)) as u8)
}

/// The text of a caught unwind payload (libjpeg's message, e.g. `libjpeg fatal error: Not a
/// JPEG file: starts with 0x89 0x50`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "libjpeg failed without a message".to_string()
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
