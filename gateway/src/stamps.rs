//! Stamps for a browser: a FITS image rendered to PNG with a zscale stretch.
//!
//! Alert stamps are small (ZTF 63×63, LSST ~90×90 float32) and full of NaNs at chip edges and
//! masked pixels; a min/max stretch would show one hot pixel and nothing else. zscale (IRAF's
//! `zscale`, what DS9 and astropy's `ZScaleInterval` default to) fits a line to the sorted pixel
//! sample, which ignores the tails. NaN and infinite pixels are drawn transparent. Rows are
//! flipped so that north is up as in DS9 (FITS stores the bottom row first).
//!
//! The FITS is parsed with CDS's `fitsrs`; the first image HDU with two axes and data is drawn
//! (Rubin stamps put the image in an extension after an empty primary). `BSCALE`/`BZERO` are
//! applied.

use fitsrs::{Fits, Pixels, HDU};
use std::io::Cursor;

/// Largest image rendered (pixels); alert stamps are far below it.
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// The image of a FITS file: width, height and pixel values, bottom row first.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f64>,
}

/// Reads the first 2-D image with data out of a FITS file.
pub fn read_image(fits: &[u8]) -> Result<Image, String> {
    // fitsrs is not fuzzed against hostile headers; a panic there must not take a worker thread.
    std::panic::catch_unwind(|| read_image_inner(fits))
        .unwrap_or_else(|_| Err("the FITS file could not be parsed (the parser failed)".into()))
}

fn read_image_inner(fits: &[u8]) -> Result<Image, String> {
    let mut hdus = Fits::from_reader(Cursor::new(fits));
    while let Some(hdu) = hdus.next() {
        let hdu = hdu.map_err(|e| format!("not a readable FITS file: {e}"))?;
        let (HDU::Primary(hdu) | HDU::XImage(hdu)) = hdu else {
            continue;
        };
        let header = hdu.get_header();
        let naxis = header.get_xtension().get_naxis().to_vec();
        if naxis.len() < 2 || naxis[0] == 0 || naxis[1] == 0 {
            continue;
        }
        let (width, height) = (naxis[0], naxis[1]);
        let n = width
            .checked_mul(height)
            .filter(|n| *n <= MAX_PIXELS)
            .ok_or_else(|| format!("the image is {width}×{height} pixels; at most {MAX_PIXELS} are rendered"))?
            as usize;
        let bscale = header.get_parsed::<f64>("BSCALE").unwrap_or(1.0);
        let bzero = header.get_parsed::<f64>("BZERO").unwrap_or(0.0);
        let scale = |v: f64| v * bscale + bzero;
        let pixels: Vec<f64> = match hdus.get_data(&hdu).pixels() {
            Pixels::U8(it) => it.take(n).map(|v| scale(f64::from(v))).collect(),
            Pixels::I16(it) => it.take(n).map(|v| scale(f64::from(v))).collect(),
            Pixels::I32(it) => it.take(n).map(|v| scale(f64::from(v))).collect(),
            Pixels::I64(it) => it.take(n).map(|v| scale(v as f64)).collect(),
            Pixels::F32(it) => it.take(n).map(|v| scale(f64::from(v))).collect(),
            Pixels::F64(it) => it.take(n).map(scale).collect(),
        };
        if pixels.len() != n {
            return Err(format!("the image data is truncated: {} of {n} pixels", pixels.len()));
        }
        return Ok(Image { width: width as usize, height: height as usize, pixels });
    }
    Err("the FITS file has no 2-D image".into())
}

/// IRAF's zscale limits: a line fitted to the sorted sample (with 2.5σ rejection), its slope
/// divided by the contrast (0.25) and centred on the median. Falls back to the sample's range
/// when too few pixels survive. Non-finite pixels are ignored; `None` when there are none.
pub fn zscale(pixels: &[f64]) -> Option<(f64, f64)> {
    const MAX_SAMPLES: usize = 1000;
    const CONTRAST: f64 = 0.25;
    const KREJ: f64 = 2.5;
    const MAX_ITERATIONS: usize = 5;
    let finite = pixels.iter().filter(|v| v.is_finite()).count();
    if finite == 0 {
        return None;
    }
    let stride = finite.div_ceil(MAX_SAMPLES).max(1);
    let mut sample: Vec<f64> = pixels.iter().copied().filter(|v| v.is_finite()).step_by(stride).collect();
    sample.sort_by(f64::total_cmp);
    let n = sample.len();
    let (lo, hi) = (sample[0], sample[n - 1]);
    let median = if n % 2 == 1 { sample[n / 2] } else { 0.5 * (sample[n / 2 - 1] + sample[n / 2]) };
    let min_kept = (n / 2).max(5);
    if n < min_kept.max(3) {
        return Some((lo, hi));
    }
    // Fit v = a + b·x over x = index − centre, rejecting outliers.
    let centre = (n as f64 - 1.0) / 2.0;
    let mut keep = vec![true; n];
    let mut slope = 0.0;
    for _ in 0..MAX_ITERATIONS {
        let (mut sx, mut sy, mut sxx, mut sxy, mut m) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, v) in sample.iter().enumerate().filter(|(i, _)| keep[*i]) {
            let x = i as f64 - centre;
            sx += x;
            sy += v;
            sxx += x * x;
            sxy += x * v;
            m += 1.0;
        }
        let denom = m * sxx - sx * sx;
        if m < min_kept as f64 || denom == 0.0 {
            break;
        }
        slope = (m * sxy - sx * sy) / denom;
        let intercept = (sy - slope * sx) / m;
        let residual = |i: usize| sample[i] - (intercept + slope * (i as f64 - centre));
        let sigma = ((0..n).filter(|i| keep[*i]).map(|i| residual(i).powi(2)).sum::<f64>() / m).sqrt();
        let before = keep.iter().filter(|k| **k).count();
        for (i, k) in keep.iter_mut().enumerate() {
            *k = residual(i).abs() <= KREJ * sigma;
        }
        let after = keep.iter().filter(|k| **k).count();
        if after == before || after < min_kept {
            break;
        }
    }
    let kept = keep.iter().filter(|k| **k).count();
    if kept < min_kept {
        return Some((lo, hi));
    }
    let slope = slope / CONTRAST;
    let z1 = (median - centre * slope).max(lo);
    let z2 = (median + centre * slope).min(hi);
    Some(if z1 < z2 { (z1, z2) } else { (lo, hi) })
}

/// Renders an image as an 8-bit grey PNG with alpha (transparent where the pixel is not finite),
/// zscale-stretched, top row first.
pub fn to_png(image: &Image) -> Result<Vec<u8>, String> {
    let (z1, z2) = zscale(&image.pixels).unwrap_or((0.0, 1.0));
    let span = if z2 > z1 { z2 - z1 } else { 1.0 };
    let mut rgba = Vec::with_capacity(image.pixels.len() * 2);
    for row in (0..image.height).rev() {
        for v in &image.pixels[row * image.width..(row + 1) * image.width] {
            if v.is_finite() {
                rgba.push((((v - z1) / span).clamp(0.0, 1.0) * 255.0).round() as u8);
                rgba.push(255);
            } else {
                rgba.extend([0, 0]);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
    encoder.set_color(png::ColorType::GrayscaleAlpha);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| format!("png: {e}"))?;
    writer.write_image_data(&rgba).map_err(|e| format!("png: {e}"))?;
    writer.finish().map_err(|e| format!("png: {e}"))?;
    Ok(out)
}

/// FITS bytes → PNG bytes.
pub fn fits_to_png(fits: &[u8]) -> Result<Vec<u8>, String> {
    to_png(&read_image(fits)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal FITS file: a primary HDU with a `width`×`height` float32 image.
    fn fits(width: usize, height: usize, pixels: &[f32]) -> Vec<u8> {
        let cards = [
            "SIMPLE  =                    T".to_owned(),
            "BITPIX  =                  -32".to_owned(),
            "NAXIS   =                    2".to_owned(),
            format!("NAXIS1  = {width:>20}"),
            format!("NAXIS2  = {height:>20}"),
            "END".to_owned(),
        ];
        let mut out: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
        out.resize(2880, b' ');
        for p in pixels {
            out.extend(p.to_be_bytes());
        }
        out.resize(out.len().div_ceil(2880) * 2880, 0);
        out
    }

    #[test]
    fn zscale_ignores_a_hot_pixel_and_nans() {
        let mut pixels: Vec<f64> = (0..1000).map(|i| 100.0 + (i % 10) as f64).collect();
        pixels[7] = 1e6;
        pixels[8] = f64::NAN;
        let (z1, z2) = zscale(&pixels).unwrap();
        assert!(z1 >= 100.0 && z2 < 200.0, "({z1}, {z2}) must hug the bulk, not the hot pixel");
        assert_eq!(zscale(&[f64::NAN, f64::INFINITY]), None);
        let (a, b) = zscale(&[5.0; 100]).unwrap();
        assert_eq!((a, b), (5.0, 5.0), "a flat image has a flat range");
    }

    #[test]
    fn a_fits_image_renders_flipped_with_nans_transparent() {
        // 3×2: bottom row 0,1,2; top row NaN,4,5.
        let bytes = fits(3, 2, &[0.0, 1.0, 2.0, f32::NAN, 4.0, 5.0]);
        let image = read_image(&bytes).unwrap();
        assert_eq!((image.width, image.height), (3, 2));
        assert!(image.pixels[3].is_nan());
        let png = to_png(&image).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        let px = &buf[..info.buffer_size()];
        // First PNG row is the FITS top row: NaN (transparent), then 4 and 5 (bright).
        assert_eq!(px[1], 0, "NaN is transparent");
        assert_eq!(px[5], 255);
        assert!(px[4] > px[2 * 3], "5 is brighter than 0");
        // Second PNG row is the FITS bottom row: 0 is the darkest.
        assert_eq!(px[6], 0);
    }

    #[test]
    fn bad_fits_is_an_error_not_a_panic() {
        assert!(read_image(b"not fits at all").is_err());
        assert!(read_image(&[]).is_err());
        let mut truncated = fits(63, 63, &vec![1.0; 63 * 63]);
        truncated.truncate(4000);
        assert!(fits_to_png(&truncated).is_err());
        let huge = fits(100_000, 100_000, &[]);
        assert!(read_image(&huge).unwrap_err().contains("at most"));
    }
}
