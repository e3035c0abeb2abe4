//! Sky regions: cones and IVOA MOCs, and the angular distance both filters and watch lists use.

use super::spec::{Cone, SkyRegionParams};
use moc::deser::ascii::from_ascii_ivoa;
use moc::moc::range::RangeMOC;
use moc::moc::{CellOrCellRangeMOCIntoIterator, CellOrCellRangeMOCIterator, RangeMOCIterator};
use moc::qty::Hpx;

/// Bound on a MOC's text.
pub const MAX_MOC_BYTES: usize = 1 << 20;

/// Parses an IVOA MOC in its ASCII serialization (`"3/1-5 4/100 8/"`).
pub fn parse_moc(text: &str) -> Result<RangeMOC<u64, Hpx<u64>>, String> {
    if text.len() > MAX_MOC_BYTES {
        return Err(format!("the MOC is larger than {MAX_MOC_BYTES} bytes"));
    }
    let cells = from_ascii_ivoa::<u64, Hpx<u64>>(text)
        .map_err(|e| format!("moc {text:?} is not an IVOA ASCII MOC (like \"3/1-5 4/100\"): {e}"))?;
    Ok(cells.into_cellcellrange_moc_iter().ranges().into_range_moc())
}

/// Great-circle distance between two positions, degrees (haversine: exact at small separations).
pub fn distance_deg(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (d1, d2) = (dec1.to_radians(), dec2.to_radians());
    let dd = d2 - d1;
    let dr = (ra2 - ra1).to_radians();
    let h = (dd / 2.0).sin().powi(2) + d1.cos() * d2.cos() * (dr / 2.0).sin().powi(2);
    (2.0 * h.sqrt().min(1.0).asin()).to_degrees()
}

/// A compiled `sky_region`.
pub struct Region {
    cones: Vec<Cone>,
    moc: Option<RangeMOC<u64, Hpx<u64>>>,
    exclude: bool,
}

impl Region {
    pub fn new(p: &SkyRegionParams) -> Result<Region, String> {
        let moc = p.moc.as_deref().map(parse_moc).transpose()?;
        Ok(Region { cones: p.cones.clone(), moc, exclude: p.exclude })
    }

    /// Whether a position is inside any cone or the MOC.
    pub fn contains(&self, ra: f64, dec: f64) -> bool {
        self.cones.iter().any(|c| distance_deg(ra, dec, c.ra, c.dec) * 3600.0 <= c.radius_arcsec)
            || self.moc.as_ref().is_some_and(|m| m.is_in(ra.to_radians(), dec.to_radians()))
    }

    /// Whether an alert at this position passes: inside (or outside, with `exclude`). An alert
    /// without a position passes only an `exclude` region.
    pub fn passes(&self, ra: Option<f64>, dec: Option<f64>) -> bool {
        match (ra, dec) {
            (Some(ra), Some(dec)) => self.contains(ra, dec) != self.exclude,
            _ => self.exclude,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cones_and_mocs() {
        let p = SkyRegionParams {
            cones: vec![Cone { ra: 200.0, dec: 20.0, radius_arcsec: 5.0 }],
            // Order-0 cell 4 covers the equator around ra 0..90 (HEALPix base cell 4 is centred
            // on ra 0, dec 0).
            moc: Some("0/4".into()),
            exclude: false,
        };
        let r = Region::new(&p).unwrap();
        assert!(r.passes(Some(200.0), Some(20.0 + 4.9 / 3600.0)));
        assert!(!r.passes(Some(200.0), Some(20.0 + 5.1 / 3600.0)));
        assert!(r.passes(Some(0.5), Some(0.5)), "inside the MOC's base cell");
        assert!(!r.passes(Some(180.0), Some(0.0)));
        assert!(!r.passes(Some(200.0), Some(-20.0)));
        assert!(!r.passes(None, None));
        let outside = Region::new(&SkyRegionParams { exclude: true, ..p }).unwrap();
        assert!(outside.passes(Some(180.0), Some(0.0)));
        assert!(outside.passes(None, None));
        assert!(parse_moc("3/1-x").is_err());
    }

    #[test]
    fn distances() {
        assert!((distance_deg(0.0, 0.0, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((distance_deg(359.9, 0.0, 0.1, 0.0) - 0.2).abs() < 1e-9);
        assert!((distance_deg(0.0, 90.0, 123.0, 90.0)).abs() < 1e-9);
    }
}
