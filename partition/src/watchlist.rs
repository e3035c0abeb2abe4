//! Watch lists: users' catalogs of positions (name, ra, dec, radius), matched against every
//! object's position and kept on the object as [`WatchMatch`]es.
//!
//! Why the object's position, and all of the matches: an object's matches are then a function
//! of its position and the watch lists alone — deterministic on every replica, and the same
//! whether a watch list existed before the object's alerts arrived (annotated by the master as
//! it merges) or was put afterwards (the master re-annotates its stored objects, see
//! `worker::master`). That is what makes "run over the stored objects" equal "run live".
//!
//! Indexing: every entry is registered in the HEALPix cells (nested scheme, `cdshealpix`) its
//! cone overlaps at one depth per list, chosen so a cell is about as large as the list's
//! largest radius; a position looks up its one cell at each depth in use and checks the exact
//! distance of the few candidates there.

use crate::pipeline::region::distance_deg;
use cdshealpix::nested;
use lightkeeper_api::object::WatchMatch;
pub use lightkeeper_api::pipeline::WatchEntry;
use std::collections::{BTreeMap, HashMap};

/// Bound on a watch list's entries (a settings record must stay under ~1 MiB).
pub const MAX_ENTRIES: usize = 10_000;
/// Bound on an entry's radius: one degree.
pub const MAX_RADIUS_ARCSEC: f64 = 3600.0;
/// Bound on an entry's name.
pub const MAX_ENTRY_NAME: usize = 128;

/// Checks an entry; `row` (1-based) goes into the message.
pub fn check_entry(e: &WatchEntry, row: usize) -> Result<(), String> {
    if e.name.is_empty() || e.name.len() > MAX_ENTRY_NAME {
        return Err(format!("row {row}: the name must be 1 to {MAX_ENTRY_NAME} bytes"));
    }
    if !(e.ra.is_finite() && (0.0..360.0).contains(&e.ra)) {
        return Err(format!("row {row} ({}): ra {} is not in [0, 360) degrees", e.name, e.ra));
    }
    if !(e.dec.is_finite() && (-90.0..=90.0).contains(&e.dec)) {
        return Err(format!("row {row} ({}): dec {} is not in [-90, 90] degrees", e.name, e.dec));
    }
    if !(e.radius_arcsec.is_finite() && e.radius_arcsec > 0.0 && e.radius_arcsec <= MAX_RADIUS_ARCSEC) {
        return Err(format!(
            "row {row} ({}): radius {} arcsec is not in (0, {MAX_RADIUS_ARCSEC}]",
            e.name, e.radius_arcsec
        ));
    }
    Ok(())
}

/// Every watch list of the cluster, indexed.
#[derive(Default)]
pub struct WatchIndex {
    lists: BTreeMap<String, Vec<WatchEntry>>,
    /// Depth → cell → (list, entry index).
    cells: BTreeMap<u8, HashMap<u64, Vec<(usize, usize)>>>,
    names: Vec<String>,
}

/// Deepest depth used (cells of ~13 arcsec): finer buys nothing for arcsecond radii.
const MAX_DEPTH: u8 = 14;

impl WatchIndex {
    pub fn new(lists: BTreeMap<String, Vec<WatchEntry>>) -> WatchIndex {
        let mut cells: BTreeMap<u8, HashMap<u64, Vec<(usize, usize)>>> = BTreeMap::new();
        let names: Vec<String> = lists.keys().cloned().collect();
        for (li, entries) in lists.values().enumerate() {
            let max_radius = entries.iter().map(|e| e.radius_arcsec).fold(0.0, f64::max);
            if max_radius <= 0.0 {
                continue;
            }
            let depth = cdshealpix::best_starting_depth((max_radius / 3600.0).to_radians()).min(MAX_DEPTH);
            let at = cells.entry(depth).or_default();
            for (ei, e) in entries.iter().enumerate() {
                let bmoc = nested::cone_coverage_approx(
                    depth,
                    e.ra.to_radians(),
                    e.dec.to_radians(),
                    (e.radius_arcsec / 3600.0).to_radians(),
                );
                for cell in bmoc.flat_iter() {
                    at.entry(cell).or_default().push((li, ei));
                }
            }
        }
        WatchIndex { lists, cells, names }
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The entries whose cone holds the position, sorted by (watch list, distance, name).
    pub fn matches(&self, ra: Option<f64>, dec: Option<f64>) -> Vec<WatchMatch> {
        let (Some(ra), Some(dec)) = (ra, dec) else { return Vec::new() };
        if self.lists.is_empty() || !ra.is_finite() || !dec.is_finite() {
            return Vec::new();
        }
        let (lon, lat) = (ra.rem_euclid(360.0).to_radians(), dec.clamp(-90.0, 90.0).to_radians());
        let mut out = Vec::new();
        for (&depth, cells) in &self.cells {
            let Some(candidates) = cells.get(&nested::hash(depth, lon, lat)) else { continue };
            for &(li, ei) in candidates {
                let list = &self.names[li];
                let e = &self.lists[list][ei];
                let d = distance_deg(ra, dec, e.ra, e.dec) * 3600.0;
                if d <= e.radius_arcsec {
                    out.push(WatchMatch { watchlist: list.clone(), name: e.name.clone(), distance_arcsec: d });
                }
            }
        }
        out.sort_by(|a, b| {
            a.watchlist
                .cmp(&b.watchlist)
                .then(a.distance_arcsec.total_cmp(&b.distance_arcsec))
                .then(a.name.cmp(&b.name))
        });
        out.dedup();
        out
    }

    /// The entries of one list.
    pub fn list(&self, name: &str) -> Option<&[WatchEntry]> {
        self.lists.get(name).map(Vec::as_slice)
    }

    pub fn lists(&self) -> impl Iterator<Item = (&str, usize)> {
        self.lists.iter().map(|(n, e)| (n.as_str(), e.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, ra: f64, dec: f64, r: f64) -> WatchEntry {
        WatchEntry { name: name.into(), ra, dec, radius_arcsec: r }
    }

    #[test]
    fn matches_are_exact_and_sorted() {
        let idx = WatchIndex::new(BTreeMap::from([
            ("b".to_owned(), vec![entry("near", 10.0, 10.0, 5.0), entry("far", 10.0, 10.0 + 20.0 / 3600.0, 30.0)]),
            ("a".to_owned(), vec![entry("wide", 10.01, 10.0, 3600.0), entry("pole", 0.0, 90.0, 10.0)]),
        ]));
        let m = idx.matches(Some(10.0), Some(10.0 + 1.0 / 3600.0));
        let got: Vec<(&str, &str)> = m.iter().map(|m| (m.watchlist.as_str(), m.name.as_str())).collect();
        assert_eq!(got, [("a", "wide"), ("b", "near"), ("b", "far")]);
        assert!(idx.matches(Some(10.0), Some(10.0 + 6.0 / 3600.0)).iter().all(|m| m.name != "near"));
        assert_eq!(idx.matches(Some(123.0), Some(89.999)).len(), 1, "near the pole, any ra");
        assert!(idx.matches(None, Some(1.0)).is_empty());
        assert!(idx.matches(Some(200.0), Some(-30.0)).is_empty());
    }

    #[test]
    fn entries_are_checked() {
        assert!(check_entry(&entry("x", 360.0, 0.0, 1.0), 1).is_err());
        assert!(check_entry(&entry("x", 1.0, 91.0, 1.0), 1).is_err());
        assert!(check_entry(&entry("x", 1.0, 1.0, 0.0), 1).is_err());
        assert!(check_entry(&entry("", 1.0, 1.0, 1.0), 1).is_err());
        assert!(check_entry(&entry("x", 1.0, 1.0, 1.0), 1).is_ok());
    }
}
