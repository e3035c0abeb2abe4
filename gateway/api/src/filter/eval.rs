//! Reading a field's value off a summary, and evaluating a filter in three-valued logic.
//!
//! Nothing here looks a name up or allocates: fields were resolved when the filter was parsed.

use super::ast::{CmpOp, Expr, Literal, Operand};
use super::fields::Field;
use crate::object::ObjectSummary;
use std::cmp::Ordering;

/// A field's value in one summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Number(f64),
    Integer(i64),
    Str(&'a str),
    Bool(bool),
}

impl Scalar<'_> {
    /// A total order for sorting: nulls first, then numbers and integers by value (floats by
    /// `f64::total_cmp`, integers against floats exactly), then strings byte-wise, then
    /// `false < true`. Values of one field are all of one kind, so only the null rule and the
    /// order within a kind matter in practice.
    pub fn cmp_total(&self, other: &Scalar<'_>) -> Ordering {
        use Scalar::*;
        match (*self, *other) {
            (Number(a), Number(b)) => a.total_cmp(&b),
            (Integer(a), Integer(b)) => a.cmp(&b),
            // -0.0 sorts before 0.0 under total_cmp, so it also sorts before the integer 0.
            (Integer(a), Number(b)) => cmp_int_float(a, b).then(if b == 0.0 && b.is_sign_negative() {
                Ordering::Greater
            } else {
                Ordering::Equal
            }),
            (Number(_), Integer(_)) => other.cmp_total(self).reverse(),
            (Str(a), Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Bool(a), Bool(b)) => a.cmp(&b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Scalar::Null => 0,
            Scalar::Number(_) | Scalar::Integer(_) => 1,
            Scalar::Str(_) => 2,
            Scalar::Bool(_) => 3,
        }
    }
}

/// Compares an integer with a float exactly (no rounding of large integers); -0.0 equals 0.
/// NaN, which summaries never hold, sorts like `f64::total_cmp` puts it: by its sign bit.
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return if f.is_sign_negative() { Ordering::Greater } else { Ordering::Less };
    }
    if f >= TWO_POW_63 {
        return Ordering::Less;
    }
    if f < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // In range and integral, so the cast is exact.
    match i.cmp(&(whole as i64)) {
        Ordering::Equal if f > whole => Ordering::Less,
        Ordering::Equal if f < whole => Ordering::Greater,
        ord => ord,
    }
}

fn count(n: usize) -> Scalar<'static> {
    Scalar::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn number(x: Option<f64>) -> Scalar<'static> {
    x.map_or(Scalar::Null, Scalar::Number)
}

fn integer(x: Option<i64>) -> Scalar<'static> {
    x.map_or(Scalar::Null, Scalar::Integer)
}

/// The value of field `f` in summary `s`.
pub fn value(s: &ObjectSummary, f: Field) -> Scalar<'_> {
    use Field::*;
    let a = &s.attributes;
    match f {
        Key => Scalar::Str(&s.key),
        Survey => Scalar::Str(s.survey.as_str()),
        ObjectId => Scalar::Str(&s.object_id),
        Ra => number(s.ra),
        Dec => number(s.dec),
        FirstMjd => number(s.first_mjd),
        LastMjd => number(s.last_mjd),
        NDetections => count(s.n_detections),
        NUpperLimits => count(s.n_upper_limits),
        NForced => count(s.n_forced),
        NAlerts => count(s.n_alerts),
        LatestAlertId => integer(s.latest_alert_id),
        Version => Scalar::Integer(i64::try_from(s.version).unwrap_or(i64::MAX)),
        Mag(b) => number(s.bands.get(&b).and_then(|l| l.mag)),
        MagErr(b) => number(s.bands.get(&b).and_then(|l| l.mag_err)),
        Flux(b) => number(s.bands.get(&b).and_then(|l| l.flux_njy)),
        BandFirstMjd(b) => number(s.bands.get(&b).map(|l| l.first_mjd)),
        BandLastMjd(b) => number(s.bands.get(&b).map(|l| l.mjd)),
        BandDetections(b) => count(s.bands.get(&b).map_or(0, |l| l.n_detections)),
        SolarSystem => s.solar_system.as_ref().map_or(Scalar::Null, |m| Scalar::Str(&m.name)),
        SolarSystemDistance => number(s.solar_system.as_ref().and_then(|m| m.distance_arcsec)),
        Watchlist => s.watchlists.first().map_or(Scalar::Null, |m| Scalar::Str(&m.watchlist)),
        WatchlistDistance => number(s.watchlists.first().map(|m| m.distance_arcsec)),
        Drb => number(a.drb),
        Rb => number(a.rb),
        Sgscore1 => number(a.sgscore1),
        Distpsnr1 => number(a.distpsnr1),
        Ndethist => integer(a.ndethist),
        Isdiffpos => a.isdiffpos.map_or(Scalar::Null, Scalar::Bool),
        Ssdistnr => number(a.ssdistnr),
        Ssmagnr => number(a.ssmagnr),
        Distnr => number(a.distnr),
        Magnr => number(a.magnr),
        Fwhm => number(a.fwhm),
        Elong => number(a.elong),
        Nbad => integer(a.nbad),
        Reliability => number(a.reliability),
        Snr => number(a.snr),
        PsfFlux => number(a.psf_flux),
        Extendedness => number(a.extendedness),
    }
}

/// SQL's three truth values (Kleene logic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    False,
    Unknown,
    True,
}

impl Truth {
    fn from_bool(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }

    fn not(self) -> Truth {
        match self {
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
            Truth::True => Truth::False,
        }
    }
}

pub(crate) fn literal(l: &Literal) -> Scalar<'_> {
    match l {
        Literal::Number(x) => Scalar::Number(*x),
        Literal::Integer(i) => Scalar::Integer(*i),
        Literal::Str(s) => Scalar::Str(s),
        Literal::Bool(b) => Scalar::Bool(*b),
    }
}

/// How two non-null values of compatible types compare (SQL: -0.0 = 0); `None` when they do
/// not (null, mismatched kinds — which type checking rules out — or NaN).
pub(crate) fn compare(a: Scalar<'_>, b: Scalar<'_>) -> Option<Ordering> {
    use Scalar::*;
    match (a, b) {
        (Number(x), Number(y)) => x.partial_cmp(&y),
        (Integer(x), Integer(y)) => Some(x.cmp(&y)),
        (Integer(x), Number(y)) if !y.is_nan() => Some(cmp_int_float(x, y)),
        (Number(x), Integer(y)) if !x.is_nan() => Some(cmp_int_float(y, x).reverse()),
        (Str(x), Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Bool(x), Bool(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

fn test(lhs: Scalar<'_>, op: CmpOp, rhs: Scalar<'_>) -> Truth {
    compare(lhs, rhs).map_or(Truth::Unknown, |ord| Truth::from_bool(op.holds(ord)))
}

/// The truth value of `e` for summary `s`.
pub(crate) fn eval(e: &Expr, s: &ObjectSummary) -> Truth {
    match e {
        Expr::And(items) => {
            let mut acc = Truth::True;
            for item in items {
                match eval(item, s) {
                    Truth::False => return Truth::False,
                    Truth::Unknown => acc = Truth::Unknown,
                    Truth::True => {}
                }
            }
            acc
        }
        Expr::Or(items) => {
            let mut acc = Truth::False;
            for item in items {
                match eval(item, s) {
                    Truth::True => return Truth::True,
                    Truth::Unknown => acc = Truth::Unknown,
                    Truth::False => {}
                }
            }
            acc
        }
        Expr::Not(inner) => eval(inner, s).not(),
        Expr::Compare { field, op, rhs } => {
            let rhs = match rhs {
                Operand::Literal(l) => literal(l),
                Operand::Field(f) => value(s, *f),
            };
            test(value(s, *field), *op, rhs)
        }
        Expr::In { field, negated, list } => {
            let v = value(s, *field);
            if matches!(v, Scalar::Null) {
                return Truth::Unknown;
            }
            // The list holds no nulls, so `v in (…)` is True or False (SQL would say Unknown
            // only for a null in the list).
            let mut found = Truth::False;
            for l in list {
                match test(v, CmpOp::Eq, literal(l)) {
                    Truth::True => {
                        found = Truth::True;
                        break;
                    }
                    Truth::Unknown => found = Truth::Unknown,
                    Truth::False => {}
                }
            }
            if *negated {
                found.not()
            } else {
                found
            }
        }
        Expr::IsNull { field, negated } => Truth::from_bool(matches!(value(s, *field), Scalar::Null) != *negated),
    }
}
