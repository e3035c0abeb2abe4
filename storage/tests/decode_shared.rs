//! Every real packet in `shared/data` decodes, and decoded values match the data MANIFEST and
//! the packets' documented quirks.

mod common;

use common::{decoder, shared};
use lightkeeper_storage::codec::DecodeError;
use lightkeeper_storage::model::{Band, PointKind, Survey, TimeScale};
use lightkeeper_storage::registry::{EmbeddedRegistry, SchemaRegistry};
use serde_json::Value;

fn manifest() -> Vec<Value> {
    std::fs::read_to_string(shared().join("MANIFEST.jsonl"))
        .expect("MANIFEST.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn embedded_registry_has_every_version() {
    let reg = EmbeddedRegistry::from_dir(&shared().join("lsst/schema")).unwrap();
    let ids = reg.known_ids();
    for id in [300, 400, 500, 600, 601, 700, 701, 702, 703, 704, 800, 900, 1000, 1100, 1101] {
        assert!(ids.contains(&id), "schema id {id} missing from {ids:?}");
    }
}

#[test]
fn every_shared_packet_decodes_and_matches_the_manifest() {
    let d = decoder();
    let entries: Vec<Value> =
        manifest().into_iter().filter(|e| e["path"].as_str().unwrap().ends_with(".avro")).collect();
    assert!(entries.len() >= 225, "expected the full data set, found {} packets", entries.len());
    let mut failures = Vec::new();
    for e in &entries {
        let path = e["path"].as_str().unwrap();
        let bytes = std::fs::read(shared().join(path)).unwrap();
        let alert = match d.decode(&bytes) {
            Ok(a) => a,
            Err(err) => {
                failures.push(format!("{path}: {err}"));
                continue;
            }
        };
        assert!(!alert.points.is_empty(), "{path}: no points");
        assert!(alert.points.iter().all(|p| p.mjd.is_finite()), "{path}: non-finite time");
        assert!(alert.points.iter().all(|p| p.flux_njy.is_none_or(f64::is_finite)), "{path}: non-finite flux");
        match e["survey"].as_str().unwrap() {
            "ZTF" => {
                assert_eq!(alert.survey, Survey::Ztf);
                assert_eq!(alert.time_scale, TimeScale::Utc);
                assert_eq!(alert.key, format!("ztf:{}", e["objectId"].as_str().unwrap()), "{path}");
                assert_eq!(alert.alert_id, e["candid"].as_i64().unwrap(), "{path}");
                let jd = e["jd"].as_f64().unwrap();
                assert!((alert.mjd - (jd - 2_400_000.5)).abs() < 1e-9, "{path}: mjd");
                let band = match e["fid"].as_i64().unwrap() {
                    1 => Band::G,
                    2 => Band::R,
                    _ => Band::I,
                };
                assert_eq!(alert.points[0].band, band, "{path}");
                assert_eq!(alert.points[0].kind, PointKind::Detection);
                // Every prv entry becomes exactly one point (forced entries only when valid).
                let n_prv = e["n_prv_candidates"].as_u64().unwrap_or(0) as usize;
                let n_hist =
                    alert.points.len() - 1 - alert.points.iter().filter(|p| p.kind == PointKind::Forced).count();
                if !path.contains("v3_5") {
                    assert_eq!(n_hist, n_prv, "{path}: prv entries");
                }
            }
            "LSST" => {
                assert_eq!(alert.survey, Survey::Lsst);
                assert_eq!(alert.time_scale, TimeScale::Tai);
                let src = e["diaSourceId"].as_i64().unwrap();
                assert_eq!(alert.points[0].source_id, Some(src), "{path}");
                let expect_key = match e["diaObjectId"].as_i64() {
                    Some(o) if o != 0 => format!("lsst:{o}"),
                    _ => format!("lsst:{src}"),
                };
                assert_eq!(alert.key, expect_key, "{path}");
                if let Some(m) = e["midpointMjdTai"].as_f64() {
                    assert!((alert.mjd - m).abs() < 1e-9, "{path}: mjd");
                }
                assert_eq!(alert.points[0].band.as_str(), e["band"].as_str().unwrap(), "{path}");
                let n_prv = e["n_prvDiaSources"].as_u64().unwrap_or(0) as usize;
                let n_det = alert.points.iter().filter(|p| p.kind == PointKind::Detection).count();
                assert_eq!(n_det, 1 + n_prv, "{path}: detections");
            }
            other => panic!("unknown survey {other}"),
        }
    }
    assert!(failures.is_empty(), "{} packets failed to decode:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn lsst_negative_detection_nan_and_empty_history() {
    let bytes = std::fs::read(shared().join("lsst/alerts/boom/7912941781254298.avro")).unwrap();
    let a = decoder().decode(&bytes).unwrap();
    assert_eq!(a.key, "lsst:7912941781254298");
    assert_eq!(a.schema_version, "9.0");
    let p = &a.points[0];
    assert!((p.flux_njy.unwrap() - -1230.3).abs() < 0.1, "{:?}", p.flux_njy);
    assert_eq!(p.is_negative, Some(true));
    // Magnitude of |f|: -2.5 log10(1230.3) + 31.4
    assert!((p.mag.unwrap() - 23.675).abs() < 0.01, "{:?}", p.mag);
    // prvDiaSources null, prvDiaForcedSources empty: exactly the one detection.
    assert_eq!(a.points.len(), 1);
    assert!(a.ra.is_some_and(f64::is_finite));
}

#[test]
fn lsst_hsc_packet_values() {
    let bytes = std::fs::read(shared().join("lsst/alerts/boom/25409136044802067.avro")).unwrap();
    let a = decoder().decode(&bytes).unwrap();
    assert_eq!(a.schema_version, "7.1");
    let p = &a.points[0];
    assert_eq!(p.band, Band::G);
    assert!((p.flux_njy.unwrap() - 2000.98).abs() < 0.01);
    assert!((p.flux_err_njy.unwrap() - 72.06).abs() < 0.01);
    assert!((a.mjd - 57454.33).abs() < 0.01);
    assert_eq!(a.points.iter().filter(|p| p.kind == PointKind::Detection).count(), 3);
    assert_eq!(a.points.iter().filter(|p| p.kind == PointKind::Forced).count(), 3);
    // ssObjectId is 0 in this packet: a sentinel, not an association.
    assert_eq!(a.solar_system, None);
}

#[test]
fn ztf_forced_photometry_and_flux_conversion() {
    let dir = shared().join("ztf/alerts/boom");
    let f = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let a = decoder().decode(&std::fs::read(f).unwrap()).unwrap();
    assert_eq!(a.key, "ztf:ZTF18abudxnw");
    assert_eq!(a.schema_version, "4.02");
    let forced: Vec<_> = a.points.iter().filter(|p| p.kind == PointKind::Forced).collect();
    assert_eq!(forced.len(), 10, "every fp_hists entry here has procstatus 0");
    let det = &a.points[0];
    let expect = 10f64.powf(-0.4 * (det.mag.unwrap() - 31.4));
    assert!((det.flux_njy.unwrap().abs() - expect).abs() < 1e-6 * expect);
}

#[test]
fn ztf_sentinels_and_old_schemas() {
    let d = decoder();
    let evo = shared().join("ztf/alerts/ztf-avro-alert/schema_evolution");
    let v18 = d.decode(&std::fs::read(evo.join("396522680015040000.v1_8.avro")).unwrap()).unwrap();
    assert_eq!(v18.schema_version, "unknown", "v1.8 has no schemavsn field");
    // The same alert in three schema versions decodes to the same points.
    let a30 = d.decode(&std::fs::read(evo.join("472263571115115000.v3_0.avro")).unwrap()).unwrap();
    let a32 = d.decode(&std::fs::read(evo.join("472263571115115000.v3_2.avro")).unwrap()).unwrap();
    assert_eq!(a30.points, a32.points);

    // ssnamenr "null" string → no association; a real one → name and distance.
    let fink = shared().join("ztf/alerts/fink-alert-simulator/datasim_20181129");
    let mut with_ss = 0;
    for f in std::fs::read_dir(fink).unwrap() {
        let a = d.decode(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
        if let Some(ss) = &a.solar_system {
            with_ss += 1;
            assert_ne!(ss.name, "null");
            assert!(ss.distance_arcsec.is_some_and(|x| (0.0..=1.5).contains(&x)), "{ss:?}");
        }
        assert_eq!(a.schema_version, "3.2");
    }
    assert_eq!(with_ss, 40, "40 of the 127 alerts have a known asteroid nearby");
}

#[test]
fn isdiffpos_values_and_upper_limits() {
    let d = decoder();
    let dir = shared().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk");
    let mut ones = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let a = d.decode(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
        for p in &a.points {
            match p.kind {
                PointKind::Detection => {
                    assert!(p.is_negative.is_some());
                    assert_eq!(p.flux_njy.unwrap() < 0.0, p.is_negative.unwrap());
                    assert!(p.source_id.is_some());
                    ones += usize::from(p.is_negative == Some(false));
                }
                PointKind::UpperLimit => {
                    assert!(p.flux_njy.is_none() && p.mag.is_none());
                    assert!(p.limiting_mag.is_some_and(|m| (15.0..25.0).contains(&m)));
                }
                PointKind::Forced => {}
            }
        }
    }
    assert!(ones > 0);
}

#[test]
fn bad_packets_get_specific_errors() {
    let d = decoder();
    assert!(matches!(d.decode(b""), Err(DecodeError::Empty)));
    assert!(matches!(d.decode(b"hello world"), Err(DecodeError::UnknownFraming(_))));
    assert!(matches!(d.decode(&[0, 0, 0, 3, 0xe7, 1, 2, 3]), Err(DecodeError::UnknownSchemaId(999))));
    let good = std::fs::read(shared().join("lsst/alerts/boom/7912941781254298.avro")).unwrap();
    assert!(matches!(d.decode(&good[..good.len() / 2]), Err(DecodeError::Corrupt(_))));
    let ztf =
        std::fs::read(shared().join("ztf/alerts/boom").read_dir().unwrap().next().unwrap().unwrap().path()).unwrap();
    let err = d.decode(&ztf[..ztf.len() - 100]).unwrap_err();
    assert!(matches!(err, DecodeError::Corrupt(_)), "{err}");
}
