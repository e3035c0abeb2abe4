//! Property tests: no input panics the parser; printing round-trips; re-parsed filters agree.

use super::ast::{CmpOp, Expr, Literal, Operand};
use super::*;
use crate::model::{Band, SolarSystemMatch, Survey};
use crate::object::{Attributes, BandLatest};
use proptest::prelude::*;
use proptest::sample::select;

const OPS: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];
const BANDS: [Band; 6] = [Band::U, Band::G, Band::R, Band::I, Band::Z, Band::Y];
/// Values summaries and literals share, so that comparisons are often equal or close.
const NUMBERS: [f64; 8] = [0.0, -0.0, 0.5, 1.0, 3.0, 18.0, 18.25, 59000.5];
const INTEGERS: [i64; 5] = [-1, 0, 1, 3, 18];
const STRINGS: [&str; 5] = ["ztf", "lsst", "it's", "é", ""];

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![select(NUMBERS.to_vec()), any::<f64>().prop_filter("finite", |x| x.is_finite())]
}

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![select(INTEGERS.to_vec()), any::<i64>()]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![select(STRINGS.to_vec()).prop_map(str::to_string), "(?s).{0,8}"]
}

fn literal_for(ty: FieldType) -> BoxedStrategy<Literal> {
    match ty {
        FieldType::Number | FieldType::Integer => {
            prop_oneof![integer().prop_map(Literal::Integer), finite().prop_map(Literal::Number)].boxed()
        }
        FieldType::String => string().prop_map(Literal::Str).boxed(),
        FieldType::Bool => any::<bool>().prop_map(Literal::Bool).boxed(),
    }
}

fn compatible(a: FieldType, b: FieldType) -> bool {
    a == b || (a.is_numeric() && b.is_numeric())
}

/// One comparison or test, well-typed.
fn leaf() -> impl Strategy<Value = Expr> {
    select(Field::ALL.to_vec()).prop_flat_map(|field| {
        let ty = field.ty();
        let ops = if ty == FieldType::Bool { OPS[..2].to_vec() } else { OPS.to_vec() };
        let others: Vec<Field> = Field::ALL.into_iter().filter(|g| compatible(ty, g.ty())).collect();
        prop_oneof![
            (select(ops.clone()), literal_for(ty)).prop_map(move |(op, l)| Expr::Compare {
                field,
                op,
                rhs: Operand::Literal(l)
            }),
            (select(ops), select(others)).prop_map(move |(op, g)| Expr::Compare { field, op, rhs: Operand::Field(g) }),
            (any::<bool>(), prop::collection::vec(literal_for(ty), 1..5)).prop_map(move |(negated, list)| Expr::In {
                field,
                negated,
                list
            }),
            any::<bool>().prop_map(move |negated| Expr::IsNull { field, negated }),
        ]
    })
}

/// A valid expression in the parser's shape (junctions flattened).
fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::and),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn band_latest() -> impl Strategy<Value = BandLatest> {
    (finite(), prop::option::of(finite()), prop::option::of(finite()), prop::option::of(finite()), finite(), 0..5usize)
        .prop_map(|(mjd, mag, mag_err, flux_njy, first_mjd, n_detections)| BandLatest {
            mjd,
            mag,
            mag_err,
            flux_njy,
            first_mjd,
            n_detections,
        })
}

fn attributes() -> impl Strategy<Value = Attributes> {
    let num = || prop::option::of(finite());
    (
        (num(), num(), num(), num(), prop::option::of(integer()), prop::option::of(any::<bool>())),
        (num(), num(), num(), num(), num(), num()),
        (prop::option::of(integer()), num(), num(), num(), num()),
    )
        .prop_map(|(a, b, c)| Attributes {
            drb: a.0,
            rb: a.1,
            sgscore1: a.2,
            distpsnr1: a.3,
            ndethist: a.4,
            isdiffpos: a.5,
            ssdistnr: b.0,
            ssmagnr: b.1,
            distnr: b.2,
            magnr: b.3,
            fwhm: b.4,
            elong: b.5,
            nbad: c.0,
            reliability: c.1,
            snr: c.2,
            psf_flux: c.3,
            extendedness: c.4,
        })
}

fn summary() -> impl Strategy<Value = ObjectSummary> {
    let num = || prop::option::of(finite());
    let solar = prop::option::of((string(), num()))
        .prop_map(|m| m.map(|(name, distance_arcsec)| SolarSystemMatch { name, distance_arcsec, mag: None }));
    (
        (string(), any::<bool>(), string(), num(), num(), num(), num()),
        (0..5usize, 0..5usize, 0..5usize, 0..5usize, any::<u64>()),
        (prop::collection::btree_map(select(BANDS.to_vec()), band_latest(), 0..4), prop::option::of(integer())),
        (solar, attributes()),
    )
        .prop_map(|(a, b, c, d)| ObjectSummary {
            key: a.0,
            survey: if a.1 { Survey::Ztf } else { Survey::Lsst },
            object_id: a.2,
            ra: a.3,
            dec: a.4,
            first_mjd: a.5,
            last_mjd: a.6,
            n_detections: b.0,
            n_upper_limits: b.1,
            n_forced: b.2,
            n_alerts: b.3,
            version: b.4,
            bands: c.0,
            latest_alert_id: c.1,
            solar_system: d.0,
            attributes: d.1,
            watchlists: Vec::new(),
            updated_at: String::new(),
        })
}

/// Words, symbols and fragments, valid and not, that random filters are glued from.
fn token() -> impl Strategy<Value = String> {
    let names: Vec<String> = Field::ALL.iter().map(|f| f.name().to_string()).collect();
    let words = [
        "and",
        "AND",
        "Or",
        "or",
        "not",
        "NoT",
        "in",
        "IN",
        "is",
        "null",
        "NULL",
        "true",
        "False",
        "(",
        ")",
        "(",
        ")",
        ",",
        "=",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "==",
        "<>",
        "!",
        "-",
        ".",
        "18",
        "-0.5",
        "1e-3",
        "2E+8",
        ".5",
        "1.",
        "1e",
        "18abc",
        "99999999999999999999",
        "1e999",
        "'ztf'",
        "'it''s'",
        "''",
        "'",
        "'open",
        "\"x\"",
        "mag_q",
        "Mag_G",
        "foo",
        "é",
        "€",
        "\u{0}",
        "\u{fffd}",
        "🙂",
        "'é🙂'",
        ";",
        "\t",
        "\n",
    ];
    prop_oneof![
        3 => select(names),
        4 => select(words.to_vec()).prop_map(str::to_string),
        1 => "\\PC{1,3}",
    ]
}

/// Parses `text`; an error must point at a character boundary within it, and a success must
/// print to a fixpoint that parses back to itself.
fn check_parse(text: &str) -> Result<(), TestCaseError> {
    match Filter::parse(text) {
        Err(e) => {
            prop_assert!(e.position <= text.len() && text.is_char_boundary(e.position), "{text:?}: {e}");
            prop_assert!(!e.message.is_empty());
        }
        Ok(f) => {
            let printed = f.to_string();
            let back = Filter::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
            prop_assert_eq!(&back, &f, "{}", printed);
            prop_assert_eq!(back.to_string(), printed);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_strings(text in any::<String>()) {
        check_parse(&text)?;
    }

    #[test]
    fn parse_never_panics_on_ascii(text in "[ -~\t\n]{0,80}") {
        check_parse(&text)?;
    }

    #[test]
    fn parse_never_panics_on_token_soup(
        tokens in prop::collection::vec(token(), 0..24),
        glue in prop::collection::vec(select(vec!["", " ", " ", "  "]), 24),
    ) {
        let text: String = tokens.iter().zip(&glue).flat_map(|(t, g)| [t.as_str(), g]).collect();
        check_parse(&text)?;
    }

    #[test]
    fn parse_never_panics_on_mutated_filters(
        e in expr(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..4usize, prop::option::of(token())), 1..4),
    ) {
        let mut text = Filter { expr: e }.to_string();
        for (at, cut, insert) in edits {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(at..end, insert.as_deref().unwrap_or(""));
        }
        check_parse(&text)?;
    }

    #[test]
    fn print_then_parse_is_identity(e in expr()) {
        let f = Filter { expr: e };
        let text = f.to_string();
        prop_assume!(text.len() <= MAX_FILTER_BYTES);
        let back = Filter::parse(&text).map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
        prop_assert_eq!(&back, &f, "{}", text);
        // Debug shows float bits PartialEq ignores (-0.0 vs 0.0).
        prop_assert_eq!(format!("{back:?}"), format!("{f:?}"));
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn reparsed_filter_agrees_and_logic_is_kleene(e in expr(), s in summary()) {
        let f = Filter { expr: e };
        let text = f.to_string();
        prop_assume!(text.len() + 6 <= MAX_FILTER_BYTES);
        let back = Filter::parse(&text).map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
        prop_assert_eq!(f.matches(&s), back.matches(&s), "{}", text);
        // An object never matches both a filter and its negation; it matches the filter, its
        // negation or neither (Unknown), and then "f is Unknown" is also Unknown for `or`.
        let negated = Filter::parse(&format!("not ({text})")).map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert!(!(f.matches(&s) && negated.matches(&s)), "{}", text);
        prop_assert_eq!(
            eval::eval(&Expr::or(vec![f.expr.clone(), negated.expr.clone()]), &s) == eval::Truth::Unknown,
            !f.matches(&s) && !negated.matches(&s)
        );
    }
}

/// The set's candidates for a change from `before` to `after`, checked to hold each key once.
fn candidates_once(set: &FilterSet<usize>, after: &ObjectSummary, before: &ObjectSummary) -> Vec<usize> {
    let mut candidates = Vec::new();
    set.candidates(after, Some(before), &mut candidates);
    let mut sorted = candidates.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), candidates.len(), "each candidate once");
    candidates
}

/// A [`FilterSet`] never misses a match: over many random filters (several per set, under keys)
/// and summaries, every filter that matches a summary is among the set's candidates for it, and
/// its guard holds. Counted so the property is not vacuous: some of the pairs must match.
#[test]
fn a_filter_set_never_misses_a_matching_filter() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut matched, mut pairs, mut skipped_candidates) = (0usize, 0usize, 0usize);
    for _ in 0..400 {
        let filters: Vec<Filter> =
            (0..8).map(|_| Filter { expr: expr().new_tree(&mut runner).expect("tree").current() }).collect();
        let mut set = FilterSet::default();
        for (k, f) in filters.iter().enumerate() {
            set.insert(k, f);
        }
        // Removing and re-filing keeps the set consistent.
        set.remove(3);
        set.insert(3, &filters[3]);
        assert_eq!(set.len(), filters.len());
        for _ in 0..16 {
            let s = summary().new_tree(&mut runner).expect("tree").current();
            // A change from `b` to `s`; half the time a change that kept every field.
            let b = if pairs % 2 == 0 { summary().new_tree(&mut runner).expect("tree").current() } else { s.clone() };
            let candidates = candidates_once(&set, &s, &b);
            let mut after_only = Vec::new();
            set.candidates(&s, None, &mut after_only);
            for (k, f) in filters.iter().enumerate() {
                pairs += 1;
                if f.matches(&s) {
                    matched += 1;
                    assert!(after_only.contains(&k), "{f} matches {s:?} but is not a candidate");
                    if let Some(g) = Guard::of(f) {
                        assert!(g.holds(&s), "{f}: its guard {g:?} fails on a summary it matches");
                    }
                }
                if f.matches(&s) || f.matches(&b) {
                    assert!(candidates.contains(&k), "{f} matches after or before but is not a candidate");
                } else if !candidates.contains(&k) {
                    skipped_candidates += 1;
                }
            }
        }
    }
    assert!(matched > 100, "only {matched} of {pairs} pairs matched: the property was barely tested");
    // Random filters are often `or`s or `not`s (no guard); the guarded ones must exclude some.
    assert!(skipped_candidates > pairs / 10, "the guards excluded only {skipped_candidates} of {pairs}");
}

#[test]
fn guards_pick_the_most_selective_conjunct() {
    let guard = |text: &str| Guard::of(&Filter::parse(text).unwrap()).map(|g| format!("{g:?}"));
    // A closed range beats a one-sided bound; an equality on a string beats both.
    assert!(guard("n_alerts >= 2 and ra > 36 and ra < 37").unwrap().contains("Ra"));
    assert!(guard("mag_g < 18 and object_id = 'ZTF21abiuvdk' and ra > 3").unwrap().contains("ObjectId"));
    // A magnitude cut beats a count; anything beats a boolean.
    assert!(guard("n_alerts >= 2 and mag_r < 15.3").unwrap().contains("Mag"));
    assert!(guard("isdiffpos = true and sgscore1 < 0.5").unwrap().contains("Sgscore1"));
    // An `or` whose operands all test one field is guarded on it.
    assert!(guard("object_id = 'a' or (object_id = 'b' and mag_g < 18)").unwrap().contains("ObjectId"));
    // No top-level comparison with a constant common to every operand: no guard, the filter
    // is always a candidate.
    assert_eq!(guard("mag_g < 18 or mag_r < 18"), None);
    assert_eq!(guard("not (mag_g < 18)"), None);
    assert_eq!(guard("solar_system is null"), None);
    assert_eq!(guard("mag_g != 18"), None);
}

/// Watchlists (string equalities) are found by lookup: once each, for the value after or
/// before a change, and gone once removed.
#[test]
fn watchlists_are_found_by_lookup_and_each_key_once() {
    use crate::model::Survey;
    let summary = |id: &str| {
        let mut s = crate::object::ObjectState::empty(format!("ztf:{id}"), Survey::Ztf, id.into()).summary();
        s.version = 1;
        s
    };
    let mut set = FilterSet::default();
    set.insert(1, &Filter::parse("object_id in ('A', 'B')").unwrap());
    set.insert(2, &Filter::parse("object_id = 'B' or object_id = 'C'").unwrap());
    set.insert(3, &Filter::parse("object_id = 'A' and mag_g < 18").unwrap());
    let found = |after: &str, before: Option<&str>, set: &FilterSet<i32>| {
        let mut out = Vec::new();
        set.candidates(&summary(after), before.map(summary).as_ref(), &mut out);
        out.sort_unstable();
        out
    };
    assert_eq!(found("A", None, &set), vec![1, 3]);
    assert_eq!(found("B", None, &set), vec![1, 2]);
    // A change from B to A (keys never change in practice; the set must not care): 1 once.
    assert_eq!(found("A", Some("B"), &set), vec![1, 2, 3]);
    assert_eq!(found("Z", Some("C"), &set), vec![2]);
    assert_eq!(found("Z", None, &set), Vec::<i32>::new());
    set.remove(1);
    assert_eq!(found("B", None, &set), vec![2]);
    set.remove(2);
    set.remove(3);
    assert!(set.is_empty());
    assert_eq!(found("A", Some("B"), &set), Vec::<i32>::new());
}

/// Ranges on a few fields, with literals from small pools so that values fall on the bounds
/// often: what the bounds index (`set::bounds`) files.
fn range_filter() -> impl Strategy<Value = Filter> {
    let numbers = prop_oneof![
        select(vec![-1i64, 0, 1, 2, 3]).prop_map(Literal::Integer),
        select(vec![-0.0, 0.0, 0.5, 1.0, 2.5]).prop_map(Literal::Number),
    ];
    let strings = select(vec!["", "a", "ab", "b", "ZTF18a"]).prop_map(|s| Literal::Str(s.into()));
    let bound_ops = select(vec![CmpOp::Eq, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge]);
    let numeric = (select(vec![Field::Ra, Field::NAlerts]), prop::collection::vec((bound_ops.clone(), numbers), 1..4));
    let string = (Just(Field::ObjectId), prop::collection::vec((bound_ops, strings), 1..4));
    (prop_oneof![numeric, string], any::<bool>()).prop_map(|((field, tests), extra)| {
        let mut items: Vec<Expr> =
            tests.into_iter().map(|(op, l)| Expr::Compare { field, op, rhs: Operand::Literal(l) }).collect();
        if extra {
            items.push(Expr::Compare { field: Field::Dec, op: CmpOp::Gt, rhs: Operand::Literal(Literal::Number(0.0)) });
        }
        Filter { expr: Expr::and(items) }
    })
}

/// The bounds index never misses: sets of many ranges (closed, open on one side, equalities,
/// on numbers and strings), summaries whose values sit on and between the bounds, changes whose
/// value moved; every filter that matches before or after is a candidate, once.
#[test]
fn bounds_never_miss_a_matching_filter() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let values = (
        prop::option::of(select(vec![-2.0, -0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0])),
        0..5usize,
        select(vec!["", "a", "aa", "ab", "abc", "b", "ZTF18a", "ZTF18ab"]),
        prop::option::of(select(vec![-1.0, 1.0])),
    );
    let (mut matched, mut pruned) = (0usize, 0usize);
    for round in 0..300 {
        let filters: Vec<Filter> =
            (0..24).map(|_| range_filter().new_tree(&mut runner).expect("tree").current()).collect();
        let mut set = FilterSet::default();
        for (k, f) in filters.iter().enumerate() {
            set.insert(k, f);
        }
        for k in (round % 3..filters.len()).step_by(3) {
            set.remove(k);
        }
        for k in (round % 3..filters.len()).step_by(3) {
            set.insert(k, &filters[k]);
        }
        let summary_of = |runner: &mut TestRunner| {
            let mut s = summary().new_tree(runner).expect("tree").current();
            let (ra, n_alerts, id, dec) = values.new_tree(runner).expect("tree").current();
            (s.ra, s.n_alerts, s.object_id, s.dec) = (ra, n_alerts, id.to_string(), dec);
            s
        };
        for _ in 0..16 {
            let after = summary_of(&mut runner);
            let before = summary_of(&mut runner);
            let candidates = candidates_once(&set, &after, &before);
            for (k, f) in filters.iter().enumerate() {
                if f.matches(&after) || f.matches(&before) {
                    matched += 1;
                    assert!(candidates.contains(&k), "{f} matches {after:?} or {before:?} but is not a candidate");
                } else if !candidates.contains(&k) {
                    pruned += 1;
                }
            }
        }
    }
    assert!(matched > 1000 && pruned > 10_000, "barely tested: {matched} matched, {pruned} pruned");
}
