use super::*;
use crate::model::{Band, SolarSystemMatch, Survey};
use crate::object::{Attributes, BandLatest};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// A ZTF object with r-band detections only (so every g field is null), no solar-system match.
pub(super) fn summary() -> ObjectSummary {
    let r = BandLatest {
        mjd: 59010.5,
        mag: Some(18.2),
        mag_err: Some(0.05),
        flux_njy: Some(190_000.0),
        first_mjd: 59001.0,
        n_detections: 4,
    };
    ObjectSummary {
        key: "ztf:ZTF21abcdefg".to_string(),
        survey: Survey::Ztf,
        object_id: "ZTF21abcdefg".to_string(),
        ra: Some(150.25),
        dec: Some(-2.5),
        first_mjd: Some(59000.0),
        last_mjd: Some(59010.5),
        n_detections: 4,
        n_upper_limits: 2,
        n_forced: 0,
        n_alerts: 3,
        bands: BTreeMap::from([(Band::R, r)]),
        latest_alert_id: Some(1234),
        solar_system: None,
        attributes: Attributes { drb: Some(0.99), ndethist: Some(5), isdiffpos: Some(true), ..Attributes::default() },
        watchlists: Vec::new(),
        version: 7,
        updated_at: "2023-11-14T22:13:20.123Z".to_string(),
    }
}

fn matches(text: &str) -> bool {
    Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).matches(&summary())
}

fn canonical(text: &str) -> String {
    Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).to_string()
}

fn error(text: &str) -> (usize, String) {
    let e = Filter::parse(text).expect_err(text);
    (e.position, e.message)
}

#[test]
fn precedence_not_over_and_over_or() {
    // `or` binds loosest: (ra < 0 and dec < 0) or n_detections > 0.
    assert!(matches("ra < 0 and dec < 0 or n_detections > 0"));
    assert!(!matches("ra < 0 and (dec < 0 or n_detections > 0)"));
    // `not` binds tightest: (not ra < 0) and dec > 0.
    assert!(!matches("not ra < 0 and dec > 0"));
    assert!(matches("not (ra < 0 and dec > 0)"));
    let f = Filter::parse("ra < 0 or dec < 0 and n_detections > 0").unwrap();
    let Expr::Or(items) = f.expr() else { panic!("{f:?}") };
    assert!(matches!(items[1], Expr::And(_)));
    let f = Filter::parse("not ra < 0 and dec < 0").unwrap();
    let Expr::And(items) = f.expr() else { panic!("{f:?}") };
    assert!(matches!(items[0], Expr::Not(_)));
    // Canonical form: parentheses only where needed, nested junctions flattened.
    assert_eq!(canonical("(ra < 0 OR dec < 0) AnD n_detections > 0"), "(ra < 0 or dec < 0) and n_detections > 0");
    assert_eq!(canonical("ra < 0 or (dec < 0 or (n_forced = 0))"), "ra < 0 or dec < 0 or n_forced = 0");
    assert_eq!(canonical("(ra < 0 and dec < 0) or n_forced = 0"), "ra < 0 and dec < 0 or n_forced = 0");
    assert_eq!(canonical("NOT (NOT (ra < 0))"), "not not ra < 0");
    assert_eq!(canonical("not (ra < 0 and dec < 0)"), "not (ra < 0 and dec < 0)");
}

#[test]
fn numbers_and_integers() {
    for (text, want) in [
        ("ra = 150.25", true),
        ("ra != 150.25", false),
        ("ra < 150.25", false),
        ("ra <= 150.25", true),
        ("ra > 150", true),
        ("ra >= 151", false),
        ("dec < -2", true),
        ("dec = -2.5e0", true),
        ("dec > -25e-1", false),
        ("n_detections = 4", true),
        ("n_detections = 4.0", true),
        ("n_detections != 4", false),
        ("n_detections < 4.5", true),
        ("n_detections <= 3", false),
        ("n_detections > 3.999", true),
        ("n_detections >= 4", true),
        ("n_forced = 0", true),
        ("version = 7 and n_alerts = 3 and n_upper_limits = 2", true),
        ("latest_alert_id = 1234", true),
        ("ndethist >= 5 and drb > 0.9", true),
        ("mag_r < 18.5 and mag_err_r = 0.05 and flux_r > 1e5", true),
        ("first_mjd_r = 59001 and last_mjd_r = 59010.5 and last_mjd = 59010.5", true),
        ("n_detections_r = 4 and n_detections_g = 0", true),
        // Integers compare exactly with floats, even beyond 2^53.
        ("latest_alert_id < 9007199254740993", true),
        ("latest_alert_id > -9223372036854775808", true),
        ("latest_alert_id < 99999999999999999999", true),
    ] {
        assert_eq!(matches(text), want, "{text}");
    }
}

#[test]
fn strings_and_bools() {
    for (text, want) in [
        ("survey = 'ztf'", true),
        ("survey != 'ztf'", false),
        ("survey < 'zz'", true),
        ("survey <= 'ztf'", true),
        ("survey > 'lsst'", true),
        ("survey >= 'ztg'", false),
        ("key = 'ztf:ZTF21abcdefg' and object_id = 'ZTF21abcdefg'", true),
        // Byte-wise: uppercase sorts before lowercase.
        ("object_id > 'ZTF21abcdefG'", true),
        ("survey = 'ZTF'", false),
        ("isdiffpos = true", true),
        ("isdiffpos = TRUE", true),
        ("isdiffpos != false", true),
        ("isdiffpos = false", false),
        ("isdiffpos = isdiffpos", true),
    ] {
        assert_eq!(matches(text), want, "{text}");
    }
    assert_eq!(canonical("object_id = 'it''s'"), "object_id = 'it''s'");
    let f = Filter::parse("object_id = 'it''s é'").unwrap();
    assert!(matches!(f.expr(), Expr::Compare { rhs: Operand::Literal(Literal::Str(s)), .. } if s == "it's é"));
}

#[test]
fn three_valued_logic() {
    // No g detection: mag_g is null, so every comparison with it is Unknown.
    for (text, want) in [
        ("mag_g < 18", false),
        ("mag_g >= 18", false),
        ("not (mag_g < 18)", false),
        ("not not (mag_g < 18)", false),
        ("mag_g < 18 or n_detections > 0", true),
        ("mag_g < 18 or n_detections = 0", false),
        ("not (mag_g < 18 or n_detections = 0)", false),
        ("mag_g < 18 and n_detections = 0", false),
        ("not (mag_g < 18 and n_detections = 0)", true),
        ("not (mag_g < 18 and n_detections > 0)", false),
        ("mag_g = mag_g", false),
        ("mag_g != mag_r", false),
        ("solar_system = 'x' or solar_system != 'x'", false),
        ("isdiffpos = true or rb > 0.5", true),
        ("not (rb > 0.5) and not (rb <= 0.5)", false),
    ] {
        assert_eq!(matches(text), want, "{text}");
    }
}

#[test]
fn in_and_not_in() {
    for (text, want) in [
        ("survey in ('ztf', 'lsst')", true),
        ("survey in ('lsst')", false),
        ("survey not in ('lsst')", true),
        ("survey NOT IN ('ztf')", false),
        ("n_detections in (1, 2, 4)", true),
        ("n_detections in (4.0)", true),
        ("ra in (150.25, 0)", true),
        ("isdiffpos in (false)", false),
        // Null value: Unknown either way.
        ("mag_g in (18, 19)", false),
        ("mag_g not in (18, 19)", false),
        ("not (mag_g in (18))", false),
        ("solar_system not in ('Ceres')", false),
    ] {
        assert_eq!(matches(text), want, "{text}");
    }
    assert_eq!(canonical("survey not in ('ztf','lsst')"), "survey not in ('ztf', 'lsst')");
    let list = (0..MAX_IN_ITEMS).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert!(matches(&format!("n_detections in ({list})")));
}

#[test]
fn is_null() {
    for (text, want) in [
        ("mag_g is null", true),
        ("mag_g is not null", false),
        ("mag_r IS NOT NULL", true),
        ("solar_system is null", true),
        ("solar_system_distance is null and rb is null and snr is null", true),
        ("n_detections_g is null", false),
        ("not (mag_g is null)", false),
        ("n_detections >= 3 and mag_r < 18.5 and solar_system is null", true),
    ] {
        assert_eq!(matches(text), want, "{text}");
    }
    let mut s = summary();
    s.solar_system = Some(SolarSystemMatch { name: "Ceres".to_string(), distance_arcsec: Some(1.5), mag: None });
    let f = Filter::parse("solar_system = 'Ceres' and solar_system_distance < 2").unwrap();
    assert!(f.matches(&s));
    assert!(!f.matches(&summary()));
}

#[test]
fn field_against_field() {
    for (text, want) in [
        ("mag_err_r < mag_r", true),
        ("first_mjd_r >= first_mjd and last_mjd_r <= last_mjd", true),
        ("n_detections = n_detections_r", true),
        ("n_detections > mag_err_r", true),
        ("key > object_id", true),
        ("mag_g < mag_r", false),
        ("not (mag_g < mag_r)", false),
    ] {
        assert_eq!(matches(text), want, "{text}");
    }
    assert_eq!(
        error("survey = ra"),
        (9, "type mismatch: field 'survey' is a string, but field 'ra' is a number".into())
    );
    assert_eq!(error("isdiffpos < isdiffpos").0, 10);
}

#[test]
fn error_positions_and_messages() {
    let cases: &[(&str, usize, &str)] = &[
        ("mag_q < 18", 0, "unknown field 'mag_q'; did you mean 'mag_g'?"),
        ("n_detections > 0 and PSFFLUX > 0", 21, "unknown field 'PSFFLUX'; did you mean 'psfFlux'?"),
        ("colour = 'red'", 0, "unknown field 'colour' (GET /v1/fields lists the fields)"),
        ("ra < mag_q", 5, "unknown field 'mag_q'; did you mean 'mag_g'?"),
        ("survey = 18", 9, "type mismatch: field 'survey' is a string, but 18 is a number"),
        ("n_detections = 'four'", 15, "type mismatch: field 'n_detections' is an integer, but 'four' is a string"),
        ("isdiffpos = 1", 12, "type mismatch: field 'isdiffpos' is a bool, but 1 is a number"),
        ("ra = true", 5, "type mismatch: field 'ra' is a number, but true is a bool"),
        ("survey in ('ztf', 1)", 18, "type mismatch: field 'survey' is a string, but 1 in the 'in' list is a number"),
        ("isdiffpos < true", 10, "operator '<' does not apply to bool field 'isdiffpos'; use '=' or '!='"),
        ("18 < mag_g", 0, "a comparison starts with the field: write 'mag_g > 18' instead"),
        ("'ztf' = survey", 0, "a comparison starts with the field: write 'survey = 'ztf'' instead"),
        ("18 < 19", 0, "expected a field name (a comparison is 'field op value'), found '18'"),
        ("mag_g = null", 8, "a comparison with null is never true; write 'mag_g is null'"),
        ("mag_g != NULL", 9, "a comparison with null is never true; write 'mag_g is not null'"),
        ("mag_g < null", 8, "a comparison with null is never true; use 'is null' or 'is not null'"),
        ("survey in (null)", 11, "an 'in' list cannot hold null; test for it with 'is null'"),
        ("survey = 'ztf", 9, "unterminated string: no closing quote (write '' for a quote inside a string)"),
        ("mag_g < 18 foo", 11, "expected 'and', 'or' or the end of the filter, found 'foo'"),
        ("mag_g < 18)", 10, "expected 'and', 'or' or the end of the filter, found ')'"),
        ("", 0, "the filter is empty: expected a test such as 'mag_g < 18'"),
        (" \t\n", 0, "the filter is empty: expected a test such as 'mag_g < 18'"),
        ("mag_g foo 18", 6, "expected a comparison operator after field 'mag_g', found 'foo'"),
        ("mag_g", 5, "expected a comparison operator after field 'mag_g', found the end of the filter"),
        ("mag_g <", 7, "expected a value or a field after 'mag_g <', found the end of the filter"),
        ("mag_g < (18)", 8, "expected a value or a field after 'mag_g <', found '('"),
        ("(mag_g < 18", 11, "expected ')' to close the '(' at position 0, found the end of the filter"),
        ("mag_g < 18 and", 14, "expected a field name, '(' or 'not', found the end of the filter"),
        ("and mag_g < 18", 0, "expected a field name, '(' or 'not', found 'and'"),
        ("survey in 'ztf'", 10, "expected '(' after 'in', found 'ztf'"),
        ("survey in ()", 11, "expected a value in the 'in' list, found ')'"),
        ("survey in ('ztf' 'lsst')", 17, "expected ',' or ')' in the 'in' list, found 'lsst'"),
        ("survey not ('ztf')", 11, "expected 'in' after 'survey not', found '('"),
        ("mag_g is 18", 9, "expected 'null' or 'not null' after 'is', found '18'"),
        ("mag_g is not true", 13, "expected 'null' after 'is not', found 'true'"),
        ("mag_g == 18", 6, "'==' is not an operator; use '=' to test equality"),
        ("mag_g <> 18", 6, "'<>' is not an operator; use '!=' for 'not equal'"),
        ("survey = \"ztf\"", 9, "strings are in single quotes ('ztf'), found '\"' (names need no quotes)"),
        ("mag_g < .5", 8, "a number needs a digit before its decimal point (0.5, not .5)"),
        ("mag_g < 5.", 9, "expected a digit after the decimal point"),
        ("mag_g < 1e", 9, "expected the exponent's digits after 'e'"),
        ("mag_g < 18abc", 8, "invalid number '18abc'"),
        ("mag_g < 1.5.3", 8, "invalid number '1.5.3'"),
        ("mag_g < 1e999", 8, "number 1e999 is out of range"),
        ("mag_g < - 1", 8, "expected a digit after '-' (there is no arithmetic; '-' only starts a negative number)"),
        ("mag_g ! 1", 6, "expected '!=', found '!' (negation is 'not')"),
        ("survey = 'é' and ü > 1", 18, "unexpected character 'ü'"),
        ("mag_g < 18 ; drop", 11, "unexpected character ';'"),
    ];
    for &(text, position, message) in cases {
        assert_eq!(error(text), (position, message.to_string()), "{text}");
        assert!(text.is_char_boundary(position));
    }
    let e = Filter::parse("mag_q < 18").unwrap_err();
    assert_eq!(e.to_string(), "at position 0: unknown field 'mag_q'; did you mean 'mag_g'?");
    let _: &dyn std::error::Error = &e;
}

#[test]
fn bounds() {
    // Too long: the position is where the excess starts (at a character boundary).
    let long = format!("survey = '{}'", "a".repeat(MAX_FILTER_BYTES));
    let (at, msg) = error(&long);
    assert_eq!(at, MAX_FILTER_BYTES);
    assert_eq!(msg, format!("filter too long: {} bytes, the limit (MAX_FILTER_BYTES) is 4096 bytes", long.len()));
    let long = format!("key = '{}'", "é".repeat(MAX_FILTER_BYTES / 2));
    assert_eq!(error(&long).0, MAX_FILTER_BYTES - 1);
    let exact = format!("survey = '{}'", "a".repeat(MAX_FILTER_BYTES - 11));
    assert_eq!(exact.len(), MAX_FILTER_BYTES);
    assert!(!matches(&exact));

    // Too deep: the 33rd level is refused; nothing recurses further.
    let deep = |n: usize| format!("{}ra > 0{}", "(".repeat(n), ")".repeat(n));
    assert!(matches(&deep(MAX_DEPTH)));
    let msg = "filter too deeply nested: the limit (MAX_DEPTH) is 32 levels of parentheses and 'not'";
    assert_eq!(error(&deep(MAX_DEPTH + 1)), (MAX_DEPTH, msg.to_string()));
    assert_eq!(error(&"(".repeat(4000)), (MAX_DEPTH, msg.to_string()));
    assert_eq!(error(&"not ".repeat(1000)), (4 * MAX_DEPTH, msg.to_string()));
    assert!(matches(&format!("{}ra > 0", "not not ".repeat(MAX_DEPTH / 2))));

    // Too many terms: the 257th test is refused.
    let terms = |n: usize| vec!["ra > 0"; n].join(" and ");
    assert!(matches(&terms(MAX_TERMS)));
    let msg = "too many terms: the limit (MAX_TERMS) is 256 comparisons and tests".to_string();
    assert_eq!(error(&terms(MAX_TERMS + 1)), (MAX_TERMS * 11, msg));

    // Too many values in an `in` list.
    let list = vec!["1"; MAX_IN_ITEMS + 1].join(",");
    let msg = "'in' list too long: the limit (MAX_IN_ITEMS) is 256 values".to_string();
    assert_eq!(error(&format!("nbad in ({list})")), (9 + 2 * MAX_IN_ITEMS, msg));
}

#[test]
fn literals_print_back_exactly() {
    for (text, printed) in [
        ("ra = 18", "ra = 18"),
        ("ra = 18.0", "ra = 18.0"),
        ("ra = -0.5", "ra = -0.5"),
        ("ra = -0.0", "ra = -0.0"),
        ("ra = 1e-3", "ra = 0.001"),
        ("ra = 1E+20", "ra = 1e20"),
        ("ra = 0.1", "ra = 0.1"),
        ("ra = 5e-324", "ra = 5e-324"),
        ("ra = 1.7976931348623157e308", "ra = 1.7976931348623157e308"),
        ("ra = -9223372036854775808", "ra = -9223372036854775808"),
        ("ra = 9223372036854775808", "ra = 9.223372036854776e18"),
        ("survey IN ('a''''b', '')", "survey in ('a''''b', '')"),
    ] {
        assert_eq!(canonical(text), printed, "{text}");
        assert_eq!(canonical(printed), printed);
    }
    let f = Filter::parse("ra = -0.0").unwrap();
    let Expr::Compare { rhs: Operand::Literal(Literal::Number(x)), .. } = f.expr() else { panic!() };
    assert!(x.is_sign_negative());
}

#[test]
fn serde_and_from_str() {
    let f: Filter = "mag_r < 18 AND survey = 'ztf'".parse().unwrap();
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(json, r#""mag_r < 18 and survey = 'ztf'""#);
    assert_eq!(serde_json::from_str::<Filter>(&json).unwrap(), f);
    let err = serde_json::from_str::<Filter>(r#""mag_q < 1""#).unwrap_err().to_string();
    assert!(err.contains("at position 0: unknown field 'mag_q'"), "{err}");

    let o: Order = serde_json::from_str(r#""last_mjd DESC""#).unwrap();
    assert_eq!(o, Order { field: Field::LastMjd, desc: true });
    assert_eq!(serde_json::to_string(&o).unwrap(), r#""last_mjd desc""#);

    // Both are strings in the OpenAPI document.
    use utoipa::PartialSchema;
    for schema in [Filter::schema(), Order::schema()] {
        assert_eq!(serde_json::to_value(schema).unwrap()["type"], "string");
    }
}

#[test]
fn order_parsing() {
    assert_eq!(Order::parse("last_mjd desc"), Ok(Order { field: Field::LastMjd, desc: true }));
    assert_eq!(Order::parse("  mag_g  "), Ok(Order { field: Field::Mag(Band::G), desc: false }));
    assert_eq!(Order::parse("n_detections ASC"), Ok(Order { field: Field::NDetections, desc: false }));
    for f in Field::ALL.into_iter().filter(|f| f.ty() != FieldType::Bool) {
        for desc in [false, true] {
            let o = Order { field: f, desc };
            assert_eq!(Order::parse(&o.to_string()), Ok(o));
        }
    }
    let err = |t: &str| Order::parse(t).map(|_| ()).unwrap_err();
    assert_eq!(err(""), FilterError::new(0, "the ordering is empty: expected a field name, e.g. 'last_mjd desc'"));
    assert_eq!(err(" isdiffpos"), FilterError::new(1, "cannot order by bool field 'isdiffpos'"));
    assert_eq!(err("last_mdj"), FilterError::new(0, "unknown field 'last_mdj'; did you mean 'last_mjd'?"));
    assert_eq!(err("ra down"), FilterError::new(3, "expected 'asc' or 'desc' after field 'ra', found 'down'"));
    assert_eq!(err("ra asc x"), FilterError::new(7, "expected the end of the ordering, found 'x'"));

    let (a, mut b) = (summary(), summary());
    b.ra = None;
    assert_eq!(Order::parse("ra").unwrap().compare(&a, &b), Ordering::Greater);
    assert_eq!(Order::parse("ra desc").unwrap().compare(&a, &b), Ordering::Less);
}

#[test]
fn scalar_total_order() {
    use Scalar::*;
    let sorted =
        [Null, Number(f64::MIN), Integer(i64::MIN), Number(-1.5), Integer(-1), Number(-0.0), Integer(0), Number(0.5)];
    for (i, a) in sorted.iter().enumerate() {
        for (j, b) in sorted.iter().enumerate() {
            assert_eq!(a.cmp_total(b), i.cmp(&j), "{a:?} {b:?}");
        }
    }
    assert_eq!(Integer(0).cmp_total(&Number(0.0)), Ordering::Equal);
    assert_eq!(Integer(9_007_199_254_740_993).cmp_total(&Number(9_007_199_254_740_992.0)), Ordering::Greater);
    assert_eq!(Integer(i64::MAX).cmp_total(&Number(9_223_372_036_854_775_808.0)), Ordering::Less);
    assert_eq!(Str("Z").cmp_total(&Str("a")), Ordering::Less);
    assert_eq!(Bool(false).cmp_total(&Bool(true)), Ordering::Less);
    assert_eq!(Null.cmp_total(&Str("")), Ordering::Less);
}

#[test]
fn values_of_a_summary() {
    let s = summary();
    assert_eq!(value(&s, Field::Survey), Scalar::Str("ztf"));
    assert_eq!(value(&s, Field::Mag(Band::R)), Scalar::Number(18.2));
    assert_eq!(value(&s, Field::Mag(Band::G)), Scalar::Null);
    assert_eq!(value(&s, Field::BandDetections(Band::G)), Scalar::Integer(0));
    assert_eq!(value(&s, Field::BandLastMjd(Band::R)), Scalar::Number(59010.5));
    assert_eq!(value(&s, Field::Version), Scalar::Integer(7));
    assert_eq!(value(&s, Field::Isdiffpos), Scalar::Bool(true));
    assert_eq!(value(&s, Field::SolarSystem), Scalar::Null);
    // Every value has its field's type.
    for f in Field::ALL {
        let ok = match value(&s, f) {
            Scalar::Null => true,
            Scalar::Number(_) => f.ty() == FieldType::Number,
            Scalar::Integer(_) => f.ty() == FieldType::Integer,
            Scalar::Str(_) => f.ty() == FieldType::String,
            Scalar::Bool(_) => f.ty() == FieldType::Bool,
        };
        assert!(ok, "{f}");
    }
}

/// Adding a variant to `Field` fails to compile here, a reminder to list it in `Field::ALL`.
fn variant_kind(f: Field) -> (&'static str, Option<Band>) {
    use Field::*;
    match f {
        Mag(b) => ("mag", Some(b)),
        MagErr(b) => ("mag_err", Some(b)),
        Flux(b) => ("flux", Some(b)),
        BandFirstMjd(b) => ("first_mjd", Some(b)),
        BandLastMjd(b) => ("last_mjd", Some(b)),
        BandDetections(b) => ("n_detections", Some(b)),
        Key | Survey | ObjectId | Ra | Dec | FirstMjd | LastMjd | NDetections | NUpperLimits | NForced | NAlerts
        | LatestAlertId | Version | SolarSystem | SolarSystemDistance | Watchlist | WatchlistDistance | Drb | Rb
        | Sgscore1 | Distpsnr1 | Ndethist | Isdiffpos | Ssdistnr | Ssmagnr | Distnr | Magnr | Fwhm | Elong | Nbad
        | Reliability | Snr | PsfFlux | Extendedness => (f.name(), None),
    }
}

#[test]
fn fields_list_every_field_once() {
    let list = fields();
    assert_eq!(list.len(), Field::ALL.len());
    // 13 object fields, 6 per band for 6 bands, 2 solar-system fields, 2 watch-list fields,
    // 17 attributes.
    assert_eq!(list.len(), 13 + 6 * 6 + 2 + 2 + 17);
    let names: BTreeSet<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), list.len(), "names are unique");
    let kinds: BTreeSet<_> = Field::ALL.iter().map(|&f| variant_kind(f)).collect();
    assert_eq!(kinds.len(), list.len(), "variants are unique");
    for band in [Band::U, Band::G, Band::R, Band::I, Band::Z, Band::Y] {
        assert_eq!(kinds.iter().filter(|(_, b)| *b == Some(band)).count(), 6, "{band:?}");
    }
    for (info, f) in list.iter().zip(Field::ALL) {
        assert_eq!(Field::parse(&info.name), Some(f));
        assert_eq!(info.ty, f.ty());
        assert!(!info.description.is_empty() && !info.description.contains('\n'), "{f}");
        assert_eq!(f.is_attribute(), serde_json::to_value(Attributes::default()).unwrap().get(f.name()).is_some());
    }
    assert_eq!(Field::parse("Mag_g"), None);
    let json = serde_json::to_value(Fields { fields: list[..2].to_vec() }).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"fields": [
            {"name": "key", "type": "string", "description": Field::Key.description()},
            {"name": "survey", "type": "string", "description": Field::Survey.description()},
        ]})
    );
    assert_eq!(serde_json::to_value(FieldType::Integer).unwrap(), "integer");
}

#[test]
fn keywords_are_case_insensitive_fields_are_not() {
    assert!(Filter::parse("Mag_G IS NULL").is_err());
    assert_eq!(canonical("mag_g IS NoT NuLl Or NOT isdiffpos = FALSE"), "mag_g is not null or not isdiffpos = false");
}
