//! Guards that bound one field's value, sorted by their bounds: the ones that hold for a value
//! are found by binary search instead of tested one by one.
//!
//! A watchlist is often a range of keys (`object_id >= 'ZTF18aa' and object_id < 'ZTF18ab'`)
//! and a cut is often a bound (`mag_g < 18`, `ra > 36 and ra < 37`). Testing a thousand such
//! guards against every change was the largest part of the matcher's time (a profile of
//! `bench ingest --filters 1000`: about 6 % of the node's CPU, most of it string comparisons).
//! Here each is an interval, filed in one of three sorted lists, and a value costs a binary
//! search per list plus one step per guard that holds (and, for closed intervals, per
//! interval that starts below the value and reaches past it — few, unless intervals nest).
//!
//! Exactness: a guard's interval is closed — a strict bound (`<`) is taken as `<=` — so a value
//! on the bound may be found for a guard that does not hold there (the filter's full evaluation
//! then rejects it), never the reverse. Bounds and values are ordered by
//! [`Scalar::cmp_total`] after -0.0 is turned into 0 (SQL: -0.0 = 0), which agrees with the
//! evaluator's comparison on every non-null value of one kind; a guard whose literals mix kinds,
//! or hold a NaN, is not an [`Interval`] and stays with the guards tested one by one.

use super::Test;
use crate::filter::ast::{CmpOp, Literal};
use crate::filter::eval::{literal, Scalar};
use std::cmp::Ordering::{self, Greater, Less};

/// A guard's closed interval of values; `None` leaves a side open.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Interval {
    lo: Option<Literal>,
    hi: Option<Literal>,
}

/// -0.0 as 0, so that the total order agrees with SQL's equality of the two (IEEE 754:
/// `-0.0 + 0.0` is `0.0`; every other number is unchanged).
fn normal(l: &Literal) -> Literal {
    match l {
        Literal::Number(x) => Literal::Number(x + 0.0),
        other => other.clone(),
    }
}

fn normal_value(v: Scalar<'_>) -> Scalar<'_> {
    match v {
        Scalar::Number(x) => Scalar::Number(x + 0.0),
        other => other,
    }
}

fn cmp(a: &Literal, b: &Literal) -> Ordering {
    literal(a).cmp_total(&literal(b))
}

/// How bound `l` compares with (normalized, non-null) value `v`.
fn cmp_value(l: &Literal, v: Scalar<'_>) -> Ordering {
    literal(l).cmp_total(&v)
}

impl Interval {
    /// The interval within which a conjunction of tests can hold, if every test is a bound
    /// (`=`, `<`, `<=`, `>`, `>=`) with literals of one kind: numbers (no NaN) or strings.
    pub(super) fn of(tests: &[Test]) -> Option<Interval> {
        let mut kind = None;
        let (mut lo, mut hi): (Option<Literal>, Option<Literal>) = (None, None);
        for t in tests {
            let Test::Compare(op, l) = t else { return None };
            let k = match l {
                Literal::Number(x) if x.is_nan() => return None,
                Literal::Number(_) | Literal::Integer(_) => 1,
                Literal::Str(_) => 2,
                Literal::Bool(_) => return None,
            };
            if *kind.get_or_insert(k) != k {
                return None;
            }
            let l = normal(l);
            let (lower, upper) = match op {
                CmpOp::Eq => (true, true),
                CmpOp::Gt | CmpOp::Ge => (true, false),
                CmpOp::Lt | CmpOp::Le => (false, true),
                CmpOp::Ne => return None,
            };
            // The tightest bound on each side.
            if lower && lo.as_ref().is_none_or(|cur| cmp(cur, &l) == Less) {
                lo = Some(l.clone());
            }
            if upper && hi.as_ref().is_none_or(|cur| cmp(cur, &l) == Greater) {
                hi = Some(l);
            }
        }
        (lo.is_some() || hi.is_some()).then_some(Interval { lo, hi })
    }

    /// Whether `v` (normalized, non-null) lies in the interval.
    fn contains(&self, v: Scalar<'_>) -> bool {
        self.lo.as_ref().is_none_or(|lo| cmp_value(lo, v) != Greater)
            && self.hi.as_ref().is_none_or(|hi| cmp_value(hi, v) != Less)
    }
}

#[derive(Debug)]
struct Entry<K> {
    interval: Interval,
    key: K,
}

impl<K> Entry<K> {
    fn lo(&self) -> &Literal {
        self.interval.lo.as_ref().expect("filed by its lower bound")
    }

    fn hi(&self) -> &Literal {
        self.interval.hi.as_ref().expect("filed by its upper bound")
    }
}

/// Intervals keyed by `K`, each once.
#[derive(Debug)]
pub(super) struct Bounds<K> {
    /// Open above (`x >= lo`), by `lo`: those that hold for a value are a prefix.
    above: Vec<Entry<K>>,
    /// Open below (`x <= hi`), by `hi`: those that hold are a suffix.
    below: Vec<Entry<K>>,
    /// Closed, by `lo`; the ones that hold start at or below the value, and are found walking
    /// down from there while some interval further down still reaches the value.
    within: Vec<Entry<K>>,
    /// For each `within[i]`, the index in `within[..=i]` of the greatest `hi`.
    reach: Vec<usize>,
}

impl<K> Default for Bounds<K> {
    fn default() -> Self {
        Bounds { above: Vec::new(), below: Vec::new(), within: Vec::new(), reach: Vec::new() }
    }
}

impl<K: Copy + Eq> Bounds<K> {
    pub(super) fn is_empty(&self) -> bool {
        self.above.is_empty() && self.below.is_empty() && self.within.is_empty()
    }

    pub(super) fn insert(&mut self, interval: Interval, key: K) {
        let e = Entry { interval, key };
        match (&e.interval.lo, &e.interval.hi) {
            (Some(lo), None) => {
                let at = self.above.partition_point(|o| cmp(o.lo(), lo) != Greater);
                self.above.insert(at, e);
            }
            (None, Some(hi)) => {
                let at = self.below.partition_point(|o| cmp(o.hi(), hi) != Greater);
                self.below.insert(at, e);
            }
            (Some(lo), Some(_)) => {
                let at = self.within.partition_point(|o| cmp(o.lo(), lo) != Greater);
                self.within.insert(at, e);
                self.reach_from(at);
            }
            (None, None) => unreachable!("an interval has a bound"),
        }
    }

    /// Removes `key`'s interval; false if it had none here.
    pub(super) fn remove(&mut self, key: K) -> bool {
        for list in [&mut self.above, &mut self.below] {
            if let Some(i) = list.iter().position(|e| e.key == key) {
                list.remove(i);
                return true;
            }
        }
        if let Some(i) = self.within.iter().position(|e| e.key == key) {
            self.within.remove(i);
            self.reach_from(i);
            return true;
        }
        false
    }

    /// Recomputes `reach` from index `from` on (entries below it did not move).
    fn reach_from(&mut self, from: usize) {
        self.reach.truncate(from);
        for i in from..self.within.len() {
            let best = match i.checked_sub(1).map(|j| self.reach[j]) {
                Some(r) if cmp(self.within[r].hi(), self.within[i].hi()) != Less => r,
                _ => i,
            };
            self.reach.push(best);
        }
    }

    /// Calls `found` with each interval that contains `v`, once (none for a null).
    pub(super) fn find(&self, v: Scalar<'_>, mut found: impl FnMut(&Interval, K)) {
        if v == Scalar::Null {
            return;
        }
        let v = normal_value(v);
        let n = self.above.partition_point(|e| cmp_value(e.lo(), v) != Greater);
        for e in &self.above[..n] {
            found(&e.interval, e.key);
        }
        let n = self.below.partition_point(|e| cmp_value(e.hi(), v) == Less);
        for e in &self.below[n..] {
            found(&e.interval, e.key);
        }
        let n = self.within.partition_point(|e| cmp_value(e.lo(), v) != Greater);
        for i in (0..n).rev() {
            if cmp_value(self.within[self.reach[i]].hi(), v) == Less {
                break;
            }
            let e = &self.within[i];
            if cmp_value(e.hi(), v) != Less {
                found(&e.interval, e.key);
            }
        }
    }

    /// Calls `found` with each interval that contains `then` but not `now`.
    pub(super) fn find_only(&self, then: Scalar<'_>, now: Scalar<'_>, mut found: impl FnMut(K)) {
        let now = normal_value(now);
        let now_null = now == Scalar::Null;
        self.find(then, |interval, key| {
            if now_null || !interval.contains(now) {
                found(key);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lo <= x and x <= hi`, as a guard's tests.
    fn iv(lo: Option<f64>, hi: Option<f64>) -> Interval {
        let mut tests = Vec::new();
        tests.extend(lo.map(|l| Test::Compare(CmpOp::Ge, Literal::Number(l))));
        tests.extend(hi.map(|h| Test::Compare(CmpOp::Le, Literal::Number(h))));
        Interval::of(&tests).expect("an interval")
    }

    fn found(b: &Bounds<u32>, v: f64) -> Vec<u32> {
        let mut out = Vec::new();
        b.find(Scalar::Number(v), |_, k| out.push(k));
        out.sort_unstable();
        out
    }

    #[test]
    fn each_list_finds_exactly_the_intervals_that_contain_the_value() {
        let mut b = Bounds::default();
        b.insert(iv(Some(1.0), None), 1);
        b.insert(iv(None, Some(5.0)), 2);
        b.insert(iv(Some(2.0), Some(3.0)), 3);
        b.insert(iv(Some(0.0), Some(10.0)), 4);
        b.insert(iv(Some(2.5), Some(2.6)), 5);
        b.insert(iv(Some(7.0), Some(8.0)), 6);
        assert_eq!(found(&b, -1.0), vec![2]);
        assert_eq!(found(&b, 2.55), vec![1, 2, 3, 4, 5]);
        // Bounds are closed.
        assert_eq!(found(&b, 3.0), vec![1, 2, 3, 4]);
        // A long interval far down the list (4) is still found past short ones that end early.
        assert_eq!(found(&b, 9.0), vec![1, 4]);
        assert_eq!(found(&b, 7.5), vec![1, 4, 6]);
        assert!(b.remove(4));
        assert!(!b.remove(4));
        assert_eq!(found(&b, 9.0), vec![1]);
        assert_eq!(found(&b, 7.5), vec![1, 6]);
        for k in [1, 2, 3, 5, 6] {
            assert!(b.remove(k));
        }
        assert!(b.is_empty());
    }

    #[test]
    fn minus_zero_is_zero_and_null_is_nowhere() {
        let mut b = Bounds::default();
        b.insert(iv(Some(0.0), None), 1);
        b.insert(iv(None, Some(-0.0)), 2);
        assert_eq!(found(&b, -0.0), vec![1, 2]);
        assert_eq!(found(&b, 0.0), vec![1, 2]);
        let mut out = Vec::new();
        b.find(Scalar::Null, |_, k| out.push(k));
        assert!(out.is_empty());
    }

    #[test]
    fn intervals_take_the_tightest_bounds_and_refuse_mixed_kinds() {
        let t = |op, l| Test::Compare(op, l);
        let i = Interval::of(&[
            t(CmpOp::Gt, Literal::Integer(2)),
            t(CmpOp::Ge, Literal::Number(2.5)),
            t(CmpOp::Lt, Literal::Integer(9)),
            t(CmpOp::Le, Literal::Number(8.5)),
        ])
        .unwrap();
        assert_eq!(i, Interval { lo: Some(Literal::Number(2.5)), hi: Some(Literal::Number(8.5)) });
        assert!(Interval::of(&[t(CmpOp::Gt, Literal::Integer(2)), t(CmpOp::Lt, Literal::Str("a".into()))]).is_none());
        assert!(Interval::of(&[t(CmpOp::Gt, Literal::Number(f64::NAN))]).is_none());
        assert!(Interval::of(&[Test::In(vec![Literal::Integer(1)])]).is_none());
        let eq = Interval::of(&[t(CmpOp::Eq, Literal::Str("b".into()))]).unwrap();
        assert!(eq.contains(Scalar::Str("b")) && !eq.contains(Scalar::Str("c")));
    }
}
