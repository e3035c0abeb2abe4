//! Image stamps (cutouts) out of an alert packet.
//!
//! Stamps are not part of the decoded [`Alert`](crate::model::Alert): ingest never copies them
//! (three ~12–35 kB images per alert). They stay in the packet, which stays in the input log, and
//! are taken out on request ([`Decoder::stamps`](super::Decoder::stamps)).
//!
//! - ZTF: `cutoutScience` / `cutoutTemplate` / `cutoutDifference` are `{fileName, stampData}`
//!   records whose `stampData` is **gzip-compressed** FITS; it is decompressed here (bounded by
//!   [`MAX_STAMP_BYTES`], so a packet cannot inflate without limit).
//! - LSST: the same three fields are nullable `bytes` holding raw FITS (`cutoutScience` only
//!   from schema 6.1 on).

use super::avro_value::*;
use super::DecodeError;
use apache_avro::types::Value;
pub use lightkeeper_api::model::CutoutKind;
use std::io::Read;

/// Largest stamp accepted after decompression (a ZTF stamp is 20,160 bytes, an LSST one
/// 35–70 kB).
pub const MAX_STAMP_BYTES: u64 = 16 * 1024 * 1024;

/// The packet's stamps, as FITS bytes; `None` where the packet has none.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stamps {
    pub science: Option<Vec<u8>>,
    pub template: Option<Vec<u8>>,
    pub difference: Option<Vec<u8>>,
}

impl Stamps {
    pub fn get(&self, kind: CutoutKind) -> Option<&[u8]> {
        match kind {
            CutoutKind::Science => self.science.as_deref(),
            CutoutKind::Template => self.template.as_deref(),
            CutoutKind::Difference => self.difference.as_deref(),
        }
    }
}

fn field_name(kind: CutoutKind) -> &'static str {
    match kind {
        CutoutKind::Science => "cutoutScience",
        CutoutKind::Template => "cutoutTemplate",
        CutoutKind::Difference => "cutoutDifference",
    }
}

/// Takes the stamps out of a decoded alert record of either survey.
pub(super) fn extract(rec: &Value) -> Result<Stamps, DecodeError> {
    let one = |kind| -> Result<Option<Vec<u8>>, DecodeError> {
        match field(rec, &[field_name(kind)]) {
            None => Ok(None),
            // LSST: raw FITS.
            Some(Value::Bytes(b)) | Some(Value::Fixed(_, b)) => Ok(Some(b.clone())),
            // ZTF: {fileName, stampData} with gzip-compressed FITS.
            Some(r @ Value::Record(_)) => match field(r, &["stampData"]) {
                Some(Value::Bytes(b)) => gunzip(b).map(Some),
                _ => Ok(None),
            },
            Some(_) => Err(DecodeError::invalid(format!("{} is neither bytes nor a stamp record", field_name(kind)))),
        }
    };
    Ok(Stamps {
        science: one(CutoutKind::Science)?,
        template: one(CutoutKind::Template)?,
        difference: one(CutoutKind::Difference)?,
    })
}

/// Gunzips a stamp, refusing to inflate beyond [`MAX_STAMP_BYTES`]. Bytes that are not gzip
/// (no magic) are taken as they are: some re-serialised ZTF files carry plain FITS.
fn gunzip(b: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if !b.starts_with(&[0x1f, 0x8b]) {
        return Ok(b.to_vec());
    }
    let mut out = Vec::with_capacity(b.len() * 2);
    flate2::read::GzDecoder::new(b)
        .take(MAX_STAMP_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::invalid(format!("stamp does not gunzip: {e}")))?;
    if out.len() as u64 > MAX_STAMP_BYTES {
        return Err(DecodeError::invalid(format!("stamp inflates beyond {MAX_STAMP_BYTES} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_inflated_plain_bytes_pass_and_bombs_are_refused() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"SIMPLE  =                    T").unwrap();
        assert_eq!(gunzip(&gz.finish().unwrap()).unwrap(), b"SIMPLE  =                    T");
        assert_eq!(gunzip(b"SIMPLE").unwrap(), b"SIMPLE");
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..17 {
            bomb.write_all(&zeros).unwrap();
        }
        let err = gunzip(&bomb.finish().unwrap()).unwrap_err();
        assert!(err.to_string().contains("inflates beyond"), "{err}");
    }
}
