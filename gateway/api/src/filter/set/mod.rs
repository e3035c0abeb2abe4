//! Many filters against one summary: which few of them can match it.
//!
//! A node follows each partition's changes for every live filter subscription. Testing every
//! change against every filter costs (filters × changes) evaluations — with a thousand filters,
//! more than the ingest itself. A [`FilterSet`] files each filter under a *guard*: one
//! necessary condition, the comparisons with constants that its top-level `and` makes on one
//! field (`mag_g < 18` of `mag_g < 18 and drb > 0.9`; `ra > 36 and ra < 37` together), or, for
//! a top-level `or`, such comparisons on one field in every operand (`object_id = 'a' or
//! object_id = 'b'`). For a summary it reads each guarded field once and finds the guards that
//! hold for the value — string equalities by hash lookup, bounds (`<`, `>=`…) by binary search
//! in [`bounds`], the rest tested one by one — and only the filters whose guard holds, plus
//! those with no guard, are candidates, to be evaluated in full by the caller.
//!
//! Exactness: a guard is a conjunct of the filter (of each operand, for an `or`), tested with
//! the evaluator's own comparison. A filter is True only if each of its conjuncts is True (an
//! `or` only if one of its operands is), so a filter whose guard is not True (False, or Unknown
//! on a null) cannot match: no candidate is ever missed. The choice of guard
//! among a filter's conjuncts affects only how many candidates pass, and is a heuristic (no
//! statistics of the data are kept): an equality or `in` on a string beats a range closed on
//! both sides, which beats a bound on one side, which beats a boolean (two values split the
//! data at best in two); bounds on counts (`n_alerts >= 2`), which most objects pass, rank last
//! among bounds.

mod bounds;

use super::ast::{CmpOp, Expr, Literal, Operand};
use super::eval::{compare, literal, value};
use super::fields::{Field, FieldType};
use super::Filter;
use crate::object::ObjectSummary;
use bounds::{Bounds, Interval};
use std::collections::HashMap;
use std::hash::Hash;

/// The comparisons of one guard (all must hold).
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Compare(CmpOp, Literal),
    In(Vec<Literal>),
}

impl Test {
    fn holds(&self, v: super::Scalar<'_>) -> bool {
        let is = |op: CmpOp, l: &Literal| compare(v, literal(l)).is_some_and(|o| op.holds(o));
        match self {
            Test::Compare(op, l) => is(*op, l),
            Test::In(list) => list.iter().any(|l| is(CmpOp::Eq, l)),
        }
    }
}

/// A filter's necessary condition on one field: one of `any`'s conjunctions of tests holds.
/// (One conjunction for a filter whose top level is an `and`; one per operand for an `or`
/// whose every operand tests the same field, as `object_id = 'a' or object_id = 'b'`.)
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    field: Field,
    any: Vec<Vec<Test>>,
}

/// The comparisons with constants that `e`'s top-level `and` makes, grouped by field.
fn conjuncts_by_field(e: &Expr) -> Vec<(Field, Vec<Test>)> {
    let conjuncts: &[Expr] = match e {
        Expr::And(items) => items,
        single => std::slice::from_ref(single),
    };
    let mut by_field: Vec<(Field, Vec<Test>)> = Vec::new();
    for c in conjuncts {
        let (field, test) = match c {
            Expr::Compare { field, op, rhs: Operand::Literal(l) } if *op != CmpOp::Ne => {
                (*field, Test::Compare(*op, l.clone()))
            }
            Expr::In { field, negated: false, list } => (*field, Test::In(list.clone())),
            _ => continue,
        };
        match by_field.iter_mut().find(|(f, _)| *f == field) {
            Some((_, tests)) => tests.push(test),
            None => by_field.push((field, vec![test])),
        }
    }
    by_field
}

fn holds(any: &[Vec<Test>], v: super::Scalar<'_>) -> bool {
    any.iter().any(|conj| conj.iter().all(|t| t.holds(v)))
}

impl Guard {
    /// The best guard of `filter` (see the module doc), or `None` if it has none (a `not`,
    /// only `is null` tests, an `or` whose operands test different fields…).
    pub fn of(filter: &Filter) -> Option<Guard> {
        let disjuncts: Vec<&Expr> = match filter.expr() {
            Expr::Or(items) => items.iter().collect(),
            single => vec![single],
        };
        let per: Vec<Vec<(Field, Vec<Test>)>> = disjuncts.into_iter().map(conjuncts_by_field).collect();
        let first = per.first()?;
        first
            .iter()
            .filter_map(|(field, _)| {
                let any: Vec<Vec<Test>> = per
                    .iter()
                    .map(|d| d.iter().find(|(f, _)| f == field).map(|(_, tests)| tests.clone()))
                    .collect::<Option<_>>()?;
                Some(Guard { field: *field, any })
            })
            .min_by_key(Guard::rank)
    }

    /// Lower is more selective (a guess; see the module doc): the least selective operand's.
    fn rank(&self) -> u8 {
        self.any.iter().map(|tests| rank(self.field, tests)).max().unwrap_or(u8::MAX)
    }

    /// Whether the guard holds for `s` (the filter may match).
    pub fn holds(&self, s: &ObjectSummary) -> bool {
        holds(&self.any, value(s, self.field))
    }
}

fn rank(field: Field, tests: &[Test]) -> u8 {
    use Field::*;
    let (mut lower, mut upper, mut point) = (false, false, false);
    for t in tests {
        match t {
            Test::Compare(CmpOp::Eq, _) | Test::In(_) => point = true,
            Test::Compare(CmpOp::Gt | CmpOp::Ge, _) => lower = true,
            Test::Compare(CmpOp::Lt | CmpOp::Le, _) => upper = true,
            Test::Compare(CmpOp::Ne, _) => {}
        }
    }
    let ty = field.ty();
    let count = matches!(field, NAlerts | NDetections | NUpperLimits | NForced | Version | BandDetections(_));
    match () {
        _ if ty == FieldType::Bool => 9,
        _ if point && ty == FieldType::String => 0,
        _ if point => 1,
        _ if lower && upper => 2,
        _ if count => 4,
        _ => 3,
    }
}

/// The guards filed under one field.
#[derive(Debug)]
struct FieldGuards<K> {
    field: Field,
    /// Guards tested one by one against the field's value.
    guards: Vec<(Vec<Vec<Test>>, K)>,
    /// Guards that bound the value (one conjunction of `<`, `>`, `=`…): found by binary search.
    bounds: Bounds<K>,
    /// Guards that are string equalities only (`=`, `in`, an `or` of them — a watchlist):
    /// filed under each of their strings and found with one lookup of the value.
    points: HashMap<String, Vec<K>>,
}

impl<K: Copy + Eq> FieldGuards<K> {
    fn new(field: Field) -> Self {
        FieldGuards { field, guards: Vec::new(), bounds: Bounds::default(), points: HashMap::new() }
    }

    fn is_empty(&self) -> bool {
        self.guards.is_empty() && self.bounds.is_empty() && self.points.is_empty()
    }
}

/// Where a key is filed.
#[derive(Debug)]
enum Filed {
    Unguarded,
    Tested(Field),
    Points(Field, Vec<String>),
}

impl Guard {
    /// The strings of a guard that holds exactly when the value is one of them, if it is one.
    fn string_points(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for conj in &self.any {
            let [test] = conj.as_slice() else { return None };
            let literals: &[Literal] = match test {
                Test::Compare(CmpOp::Eq, l) => std::slice::from_ref(l),
                Test::In(list) => list,
                Test::Compare(..) => return None,
            };
            for l in literals {
                let Literal::Str(s) = l else { return None };
                out.push(s.clone());
            }
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

/// Filters keyed by `K`, each filed under its [`Guard`].
#[derive(Debug)]
pub struct FilterSet<K> {
    /// Guards by field, so each field's value is read once per summary.
    by_field: Vec<FieldGuards<K>>,
    /// Filters with no guard: candidates for every summary.
    unguarded: Vec<K>,
    filed: HashMap<K, Filed>,
}

impl<K> Default for FilterSet<K> {
    fn default() -> Self {
        FilterSet { by_field: Vec::new(), unguarded: Vec::new(), filed: HashMap::new() }
    }
}

impl<K: Copy + Eq + Hash> FilterSet<K> {
    /// Files `filter` under `key` (replacing what `key` had).
    pub fn insert(&mut self, key: K, filter: &Filter) {
        self.remove(key);
        let Some(g) = Guard::of(filter) else {
            self.unguarded.push(key);
            self.filed.insert(key, Filed::Unguarded);
            return;
        };
        let at = match self.by_field.iter().position(|fg| fg.field == g.field) {
            Some(i) => i,
            None => {
                self.by_field.push(FieldGuards::new(g.field));
                self.by_field.len() - 1
            }
        };
        let fg = &mut self.by_field[at];
        match g.string_points() {
            Some(points) => {
                for p in &points {
                    fg.points.entry(p.clone()).or_default().push(key);
                }
                self.filed.insert(key, Filed::Points(g.field, points));
            }
            None => {
                let interval = match g.any.as_slice() {
                    [conj] => Interval::of(conj),
                    _ => None,
                };
                match interval {
                    Some(interval) => fg.bounds.insert(interval, key),
                    None => fg.guards.push((g.any, key)),
                }
                self.filed.insert(key, Filed::Tested(g.field));
            }
        }
    }

    pub fn remove(&mut self, key: K) {
        let (field, points) = match self.filed.remove(&key) {
            None => return,
            Some(Filed::Unguarded) => {
                self.unguarded.retain(|k| *k != key);
                return;
            }
            Some(Filed::Tested(field)) => (field, Vec::new()),
            Some(Filed::Points(field, points)) => (field, points),
        };
        let Some(i) = self.by_field.iter().position(|fg| fg.field == field) else { return };
        let fg = &mut self.by_field[i];
        if !fg.bounds.remove(key) {
            fg.guards.retain(|(_, k)| *k != key);
        }
        for p in points {
            if let Some(keys) = fg.points.get_mut(&p) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    fg.points.remove(&p);
                }
            }
        }
        if fg.is_empty() {
            self.by_field.swap_remove(i);
        }
    }

    pub fn len(&self) -> usize {
        self.filed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filed.is_empty()
    }

    /// Appends to `out`, each once, the keys of the filters that may match `after` or
    /// `before` (a change's summaries: an `update` needs the first, a `leave` the second).
    /// Every filter that matches either is among them. A field whose value the change left
    /// alone (an object's key, most often) is tested once.
    pub fn candidates(&self, after: &ObjectSummary, before: Option<&ObjectSummary>, out: &mut Vec<K>) {
        out.extend_from_slice(&self.unguarded);
        for fg in &self.by_field {
            let now = value(after, fg.field);
            let then = before.map(|b| value(b, fg.field)).filter(|then| *then != now);
            for (any, key) in &fg.guards {
                if holds(any, now) || then.is_some_and(|then| holds(any, then)) {
                    out.push(*key);
                }
            }
            fg.bounds.find(now, |_, key| out.push(key));
            if let Some(then) = then {
                fg.bounds.find_only(then, now, |key| out.push(key));
            }
            if fg.points.is_empty() {
                continue;
            }
            let lookup = |v: super::Scalar<'_>| match v {
                super::Scalar::Str(s) => fg.points.get(s),
                _ => None,
            };
            let hit_now = lookup(now);
            if let Some(keys) = hit_now {
                out.extend_from_slice(keys);
            }
            if let Some(keys) = then.and_then(lookup) {
                out.extend(keys.iter().filter(|k| !hit_now.is_some_and(|n| n.contains(k))));
            }
        }
    }
}
