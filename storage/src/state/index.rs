//! Per-partition secondary indexes: how objects are found without knowing their key.
//!
//! Why they live with the objects: every index entry is written in the same RocksDB batch as the
//! object it points at, from the object's summary, by the store itself ([`super::RocksStore`]'s
//! `apply`). The master, a standby tailing the changelog, a restore and a replay all go through
//! that one write, so every replica holds exactly the same index for the same state, and a crash
//! can never leave an index entry without its object (or the reverse).
//!
//! Why partition-prefixed: one RocksDB holds every partition a node hosts, and a query is asked
//! of one partition's serving replica; a prefix makes each partition's index a contiguous key
//! range (scanned alone, and purged with one range delete when the node stops hosting it).
//!
//! Three column families, all keyed `partition:u32be ++ …`:
//! - `summaries`: `++ object key` → the object's summary (what filters evaluate and queries
//!   return, without decoding the light curve);
//! - `sky`: `++ HEALPix nested hash at depth 29 (u64be) ++ object key` → `ra, dec` (f64 le):
//!   a cone is covered by HEALPix cells ([`cdshealpix`], the CDS library), each cell a key range
//!   at depth 29, and candidates are kept only when their exact distance is within the radius;
//! - `recency`: `++ last_mjd (order-preserving u64be) ++ object key` → nothing: the newest (or
//!   oldest) objects first, for `order=last_mjd`.

use crate::object::ObjectSummary;
use std::ops::Range;

/// HEALPix depth of the stored hashes: the deepest a u64 holds (cells of ~0.4 mas), so any
/// coverage depth maps to exact key ranges.
pub const SKY_DEPTH: u8 = cdshealpix::DEPTH_MAX;

/// The key prefix of one partition in every index.
pub fn partition_prefix(partition: u32) -> [u8; 4] {
    partition.to_be_bytes()
}

/// The first key after every key of `partition`.
pub fn partition_end(partition: u32) -> Vec<u8> {
    match partition.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    }
}

pub fn summary_key(partition: u32, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&partition_prefix(partition));
    k.extend_from_slice(key.as_bytes());
    k
}

/// The object key of a `summaries` or other index key, given the prefix length before it.
pub fn object_key_of(index_key: &[u8], prefix: usize) -> Option<&str> {
    std::str::from_utf8(index_key.get(prefix..)?).ok()
}

/// HEALPix hash at [`SKY_DEPTH`] of a position in degrees (`None` if it is not a valid position).
pub fn sky_hash(ra_deg: f64, dec_deg: f64) -> Option<u64> {
    if !valid_position(ra_deg, dec_deg) {
        return None;
    }
    Some(cdshealpix::nested::hash(SKY_DEPTH, ra_deg.to_radians(), dec_deg.to_radians()))
}

pub fn valid_position(ra_deg: f64, dec_deg: f64) -> bool {
    ra_deg.is_finite() && dec_deg.is_finite() && (-90.0..=90.0).contains(&dec_deg)
}

pub fn sky_key(partition: u32, hash: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + key.len());
    k.extend_from_slice(&partition_prefix(partition));
    k.extend_from_slice(&hash.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

pub fn sky_value(ra_deg: f64, dec_deg: f64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&ra_deg.to_le_bytes());
    v[8..].copy_from_slice(&dec_deg.to_le_bytes());
    v
}

pub fn decode_sky_value(v: &[u8]) -> Option<(f64, f64)> {
    let ra = f64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let dec = f64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    Some((ra, dec))
}

/// A cone on the sky (degrees) with its HEALPix cover, computed once and read in every
/// partition: the cover does not depend on the partition, and computing it is a measurable part
/// of a small cone's time (about 7 % of a node answering 1′ cones when it was done per
/// partition).
#[derive(Debug, Clone)]
pub struct SkyCone {
    pub ra_deg: f64,
    pub dec_deg: f64,
    pub radius_deg: f64,
    /// Depth-29 hash ranges (end exclusive), sorted and disjoint.
    cover: Vec<Range<u64>>,
}

impl SkyCone {
    /// The cells from `cdshealpix`'s cone coverage at a depth chosen from the radius (a few
    /// dozen cells at most), each widened to its depth-29 range. A superset of the cone:
    /// candidates are then checked with their exact distance.
    pub fn new(ra_deg: f64, dec_deg: f64, radius_deg: f64) -> SkyCone {
        let radius = radius_deg.to_radians();
        // The depth at which the cone overlaps at most 9 cells, refined twice (cells 4× smaller
        // per step): tight enough that little outside the cone is read, few enough ranges to seek.
        let depth = (cdshealpix::best_starting_depth(radius) + 2).min(SKY_DEPTH);
        let bmoc = cdshealpix::nested::cone_coverage_approx(depth, ra_deg.to_radians(), dec_deg.to_radians(), radius);
        let shift = 2 * u32::from(SKY_DEPTH - bmoc.get_depth_max());
        let cover = bmoc.to_ranges().iter().map(|r| (r.start << shift)..(r.end << shift)).collect();
        SkyCone { ra_deg, dec_deg, radius_deg, cover }
    }

    /// The `sky` key ranges of `partition` that cover the cone, sorted and disjoint.
    pub fn key_ranges(&self, partition: u32) -> Vec<Range<Vec<u8>>> {
        self.cover
            .iter()
            .map(|r| {
                let start = sky_key(partition, r.start, "");
                let end = match r.end.checked_sub(1) {
                    // The range's end at depth 29, exclusive: every key with a hash below it.
                    Some(last) => {
                        let mut e = sky_key(partition, last, "");
                        e.push(0xff);
                        e
                    }
                    None => start.clone(),
                };
                start..end
            })
            .collect()
    }

    /// Whether a position is within the cone, and its exact distance (degrees).
    pub fn distance_within(&self, ra_deg: f64, dec_deg: f64) -> Option<f64> {
        let d = distance_deg(self.ra_deg, self.dec_deg, ra_deg, dec_deg);
        (d <= self.radius_deg).then_some(d)
    }
}

/// The `sky` key ranges of `partition` that cover a cone (degrees); see [`SkyCone`].
pub fn cone_ranges(partition: u32, ra_deg: f64, dec_deg: f64, radius_deg: f64) -> Vec<Range<Vec<u8>>> {
    SkyCone::new(ra_deg, dec_deg, radius_deg).key_ranges(partition)
}

/// Angular distance in degrees between two positions in degrees (haversine, `cdshealpix`'s).
pub fn distance_deg(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    cdshealpix::haversine_dist(ra1.to_radians(), dec1.to_radians(), ra2.to_radians(), dec2.to_radians()).to_degrees()
}

/// An `f64` as a u64 whose big-endian bytes sort as the numbers do (negatives included).
pub fn ordered_f64(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

pub fn unordered_f64(u: u64) -> f64 {
    if u >> 63 == 1 {
        f64::from_bits(u & !(1 << 63))
    } else {
        f64::from_bits(!u)
    }
}

pub fn recency_key(partition: u32, last_mjd: f64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + key.len());
    k.extend_from_slice(&partition_prefix(partition));
    k.extend_from_slice(&ordered_f64(last_mjd).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// The index keys an object's summary is found under (besides `summaries`).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexKeys {
    pub sky: Option<(Vec<u8>, [u8; 16])>,
    pub recency: Option<Vec<u8>>,
}

impl IndexKeys {
    pub fn of(partition: u32, s: &ObjectSummary) -> IndexKeys {
        let sky = match (s.ra, s.dec) {
            (Some(ra), Some(dec)) => sky_hash(ra, dec).map(|h| (sky_key(partition, h, &s.key), sky_value(ra, dec))),
            _ => None,
        };
        IndexKeys { sky, recency: s.last_mjd.map(|m| recency_key(partition, m, &s.key)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordered_floats_sort_as_numbers() {
        let xs = [-1e300, -5.5, -0.0, 0.0, 1e-300, 3.0, 60000.5, 1e300];
        for w in xs.windows(2) {
            assert!(ordered_f64(w[0]) <= ordered_f64(w[1]), "{w:?}");
        }
        for x in xs {
            assert_eq!(unordered_f64(ordered_f64(x)).to_bits(), x.to_bits());
        }
    }

    proptest! {
        /// Every position within the radius has its sky key inside one of the cone's ranges.
        #[test]
        fn cone_ranges_cover_every_position_in_the_cone(
            ra in 0.0f64..360.0, dec in -90.0f64..=90.0, radius_arcsec in 0.5f64..3600.0,
            bearing in 0.0f64..360.0, frac in 0.0f64..1.0,
        ) {
            let radius = radius_arcsec / 3600.0;
            // A point at distance frac·radius in direction `bearing` (spherical destination).
            let (d, b) = ((frac * radius).to_radians(), bearing.to_radians());
            let (ra0, dec0) = (ra.to_radians(), dec.to_radians());
            let dec1 = (dec0.sin() * d.cos() + dec0.cos() * d.sin() * b.cos()).clamp(-1.0, 1.0).asin();
            let ra1 = ra0 + (b.sin() * d.sin() * dec0.cos()).atan2(d.cos() - dec0.sin() * dec1.sin());
            let (ra1, dec1) = (ra1.to_degrees().rem_euclid(360.0), dec1.to_degrees());
            prop_assume!(distance_deg(ra, dec, ra1, dec1) < radius * 0.999);
            let key = sky_key(7, sky_hash(ra1, dec1).unwrap(), "ztf:X");
            let ranges = cone_ranges(7, ra, dec, radius);
            prop_assert!(ranges.len() < 200, "{} ranges", ranges.len());
            prop_assert!(ranges.iter().any(|r| r.start <= key && key < r.end));
        }
    }

    #[test]
    fn ranges_stay_inside_their_partition() {
        for r in cone_ranges(3, 0.0, 89.9, 1.0) {
            assert!(r.start.starts_with(&[0, 0, 0, 3]) && r.end.starts_with(&[0, 0, 0, 3]));
        }
    }
}
