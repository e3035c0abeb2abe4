//! Replica placement: which nodes host each partition, and how that changes as nodes join and
//! leave.
//!
//! The replicated table holds each partition's replicas, preferred master first. Configuration
//! seeds it (`cluster.replication_factor` over `cluster.peers`); from then on the leader keeps it
//! balanced over the *members* — the registered nodes that are not leaving — by [`target`], and
//! moves toward that target one partition and one safe step at a time by [`next_step`]:
//!
//! 1. add the new replicas (they start as standbys and restore from the changelog);
//! 2. once the target has at least as many live replicas that are ready (within
//!    `cluster.max_promotion_lag`) as the partition has now, hand mastership over if the master
//!    is being removed (a graceful handover);
//! 3. write the target: the removed replicas stop, and the order names the preferred master
//!    (the rebalancer then hands mastership to it).
//!
//! So a move never leaves a partition with fewer ready copies than before (a new replica whose
//! node dies holds the move until it returns or is decommissioned), and a leader change in the
//! middle loses nothing: the next leader recomputes the target from the table and continues.
//!
//! [`target`] moves as little as it can: it keeps every replica on a member, fills partitions
//! below the replication factor with the least-loaded live members, then moves single replicas
//! from the most- to the least-loaded node until no two members differ by more than one, and
//! does the same for preferred masters by reordering replicas (no data moves for that).

use std::collections::{BTreeMap, BTreeSet};

/// Where placement stands for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Record these replicas in the table.
    Write(Vec<String>),
    /// Hand mastership to this node first (the master is not among the target's replicas).
    Handover(String),
    /// New replicas are still restoring or catching up.
    Wait,
    /// The partition is placed as targeted.
    Done,
}

/// The balanced placement for the current one. `members`: nodes that may hold replicas;
/// `alive`: those new replicas may go to. `rf`: replicas per partition (`None`: every member).
/// `pinned` partitions (an explicit `cluster.assignment`) keep their replicas; they count toward
/// each node's load.
pub fn target(
    current: &BTreeMap<u32, Vec<String>>,
    members: &BTreeSet<String>,
    alive: &BTreeSet<String>,
    partitions: u32,
    rf: Option<usize>,
    pinned: &BTreeSet<u32>,
) -> BTreeMap<u32, Vec<String>> {
    let r = rf.unwrap_or(members.len()).min(members.len());
    if r == 0 {
        return current.clone();
    }
    let mut load: BTreeMap<String, usize> = members.iter().map(|m| (m.clone(), 0)).collect();
    for p in pinned {
        for n in current.get(p).into_iter().flatten() {
            if let Some(l) = load.get_mut(n) {
                *l += 1;
            }
        }
    }
    let mut t: BTreeMap<u32, Vec<String>> = (0..partitions)
        .filter(|p| !pinned.contains(p))
        .map(|p| {
            let kept = current.get(&p).into_iter().flatten().filter(|n| members.contains(*n)).cloned().collect();
            (p, kept)
        })
        .collect();
    for n in t.values().flatten() {
        *load.entry(n.clone()).or_default() += 1;
    }
    // Too many replicas (the factor was lowered): drop from the most loaded, last position first.
    for replicas in t.values_mut() {
        while replicas.len() > r {
            let (i, _) = replicas.iter().enumerate().max_by_key(|(i, n)| (load[*n], *i)).expect("non-empty");
            let n = replicas.remove(i);
            *load.get_mut(&n).expect("member") -= 1;
        }
    }
    // Too few (new partitions, a member left): the least-loaded live members.
    for replicas in t.values_mut() {
        while replicas.len() < r {
            let Some(n) = alive
                .iter()
                .filter(|n| members.contains(*n) && !replicas.contains(n))
                .min_by_key(|n| (load[*n], (*n).clone()))
                .cloned()
            else {
                break;
            };
            *load.get_mut(&n).expect("member") += 1;
            replicas.push(n);
        }
    }
    // Even out replica counts, one replica at a time.
    let bound = (partitions as usize + 1) * (members.len() + 1);
    for _ in 0..bound {
        let Some(hi) = load.iter().max_by_key(|(n, l)| (**l, std::cmp::Reverse((*n).clone()))).map(|(n, _)| n.clone())
        else {
            break;
        };
        let Some(lo) = alive.iter().filter(|n| members.contains(*n)).min_by_key(|n| (load[*n], (*n).clone())).cloned()
        else {
            break;
        };
        if load[&hi] <= load[&lo] + 1 {
            break;
        }
        let Some(replicas) = t.values_mut().find(|rs| rs.contains(&hi) && !rs.contains(&lo)) else { break };
        let i = replicas.iter().position(|n| *n == hi).expect("contains");
        replicas[i] = lo.clone();
        *load.get_mut(&hi).expect("member") -= 1;
        *load.get_mut(&lo).expect("member") += 1;
    }
    // Even out preferred masters by reordering (moves no data).
    for _ in 0..bound {
        let mut leads: BTreeMap<String, usize> = members.iter().map(|m| (m.clone(), 0)).collect();
        for rs in t.values() {
            if let Some(first) = rs.first() {
                *leads.entry(first.clone()).or_default() += 1;
            }
        }
        let Some(hi) = leads.iter().max_by_key(|(n, l)| (**l, std::cmp::Reverse((*n).clone()))).map(|(n, _)| n.clone())
        else {
            break;
        };
        // The least-leading live member that hosts a partition `hi` leads.
        let swap = alive
            .iter()
            .filter(|n| members.contains(*n) && leads[*n] + 1 < leads[&hi])
            .filter_map(|lo| {
                let p = t.iter().find(|(_, rs)| rs.first() == Some(&hi) && rs.contains(lo)).map(|(p, _)| *p)?;
                Some((leads[lo], lo.clone(), p))
            })
            .min();
        let Some((_, lo, p)) = swap else { break };
        let rs = t.get_mut(&p).expect("found");
        let j = rs.iter().position(|n| *n == lo).expect("contains");
        rs.swap(0, j);
    }
    for p in pinned {
        if let Some(rs) = current.get(p) {
            t.insert(*p, rs.clone());
        }
    }
    t
}

/// Whether placement leaves the table as it is: the members are exactly the configured `peers`
/// and every partition still has its configured replicas (`seed`) — a cluster running as
/// configured keeps its configured placement. Anything else is balanced: a node joined or is
/// leaving, or the table has moved away from the seed (a node decommissioned and then re-added
/// has no replicas left; without this it would stay empty while the others carry everything,
/// as the chaos soak found).
pub fn as_configured<'a>(
    members: &BTreeSet<String>,
    peers: impl Iterator<Item = &'a String>,
    current: &BTreeMap<u32, Vec<String>>,
    seed: impl Fn(u32) -> Vec<String>,
) -> bool {
    members.iter().eq(peers) && current.iter().all(|(p, rs)| *rs == seed(*p))
}

/// The next step for one partition from `current` toward `target`. `master`: the partition's
/// master, if known; `ready(n)`: node `n`'s replica is ready and within the promotion bound;
/// `dead(n)`: node `n` is down (its replica counts as not ready; it receives no mastership).
pub fn next_step(
    current: &[String],
    target: &[String],
    master: Option<&str>,
    ready: impl Fn(&str) -> bool,
    dead: impl Fn(&str) -> bool,
) -> Step {
    if current == target {
        return Step::Done;
    }
    let added: Vec<String> = target.iter().filter(|n| !current.contains(n)).cloned().collect();
    if !added.is_empty() {
        let mut union = current.to_vec();
        union.extend(added);
        return Step::Write(union);
    }
    // Nothing is removed while the target has fewer ready copies than the partition has now.
    let ready_in = |set: &[String]| set.iter().filter(|n| !dead(n) && ready(n)).cloned().collect::<Vec<_>>();
    let (ready_target, ready_now) = (ready_in(target), ready_in(current));
    if ready_target.is_empty() || ready_target.len() < target.len().min(ready_now.len()) {
        return Step::Wait;
    }
    if let Some(m) = master {
        if !m.is_empty() && !target.iter().any(|n| n == m) && !dead(m) {
            return Step::Handover(ready_target[0].clone());
        }
    }
    Step::Write(target.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ns: &[&str]) -> BTreeSet<String> {
        ns.iter().map(|n| (*n).to_owned()).collect()
    }

    /// Partition p on the `rf` members from position p mod n (the configured seed).
    fn seeded(ms: &[&str], partitions: u32, rf: usize) -> BTreeMap<u32, Vec<String>> {
        (0..partitions).map(|p| (p, (0..rf).map(|i| ms[(p as usize + i) % ms.len()].to_owned()).collect())).collect()
    }

    fn loads(t: &BTreeMap<u32, Vec<String>>, members: &BTreeSet<String>) -> (Vec<usize>, Vec<usize>) {
        let count = |first: bool| {
            members
                .iter()
                .map(|m| t.values().filter(|rs| if first { rs.first() == Some(m) } else { rs.contains(m) }).count())
                .collect()
        };
        (count(false), count(true))
    }

    fn spread(v: &[usize]) -> usize {
        v.iter().max().unwrap() - v.iter().min().unwrap()
    }

    /// Runs the leader's loop to a fixed point: every new replica is ready at once, and a
    /// handover moves the master. Returns the placement and the number of table writes.
    fn converge(
        mut current: BTreeMap<u32, Vec<String>>,
        members: &BTreeSet<String>,
        partitions: u32,
        rf: Option<usize>,
    ) -> (BTreeMap<u32, Vec<String>>, usize) {
        let mut masters: BTreeMap<u32, String> = current.iter().map(|(p, rs)| (*p, rs[0].clone())).collect();
        let mut writes = 0;
        for _ in 0..1000 {
            let t = target(&current, members, members, partitions, rf, &BTreeSet::new());
            let Some((p, step)) = t.iter().find_map(|(p, rs)| {
                let cur = current.get(p).cloned().unwrap_or_default();
                match next_step(&cur, rs, masters.get(p).map(String::as_str), |_| true, |_| false) {
                    Step::Done => None,
                    s => Some((*p, s)),
                }
            }) else {
                return (current, writes);
            };
            match step {
                Step::Write(rs) => {
                    let before = current.get(&p).cloned().unwrap_or_default();
                    for n in &before {
                        assert!(rs.contains(n) || t[&p].iter().all(|x| x != n), "only targeted removals");
                    }
                    current.insert(p, rs);
                    writes += 1;
                }
                Step::Handover(to) => {
                    masters.insert(p, to);
                }
                Step::Wait | Step::Done => unreachable!("all ready"),
            }
        }
        panic!("placement did not converge: {current:?}");
    }

    #[test]
    fn a_joining_node_gets_its_share_with_few_moves() {
        for (n, partitions, rf) in [(3, 3, 2), (3, 4, 2), (3, 12, 2), (4, 16, 3), (2, 8, 1)] {
            let old: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
            let refs: Vec<&str> = old.iter().map(String::as_str).collect();
            let start = seeded(&refs, partitions, rf);
            let mut all = refs.clone();
            all.push("zz-new");
            let members = names(&all);
            let (end, writes) = converge(start.clone(), &members, partitions, Some(rf));
            let (replicas, leads) = loads(&end, &members);
            assert!(spread(&replicas) <= 1, "replicas balanced {replicas:?} ({n} nodes, {partitions}×{rf})");
            assert!(spread(&leads) <= 1, "preferred masters balanced {leads:?} ({n} nodes, {partitions}×{rf})");
            assert!(end.values().all(|rs| rs.len() == rf), "every partition keeps {rf} replicas");
            // Moves: only what the new node takes (each move is an add and a remove).
            let moved: usize = end.iter().map(|(p, rs)| rs.iter().filter(|x| !start[p].contains(x)).count()).sum();
            let share = (partitions as usize * rf).div_ceil(n + 1);
            assert!(moved <= share, "moved {moved} replicas, the new node's share is {share}");
            assert!(writes <= 3 * moved + partitions as usize, "{writes} writes");
        }
    }

    #[test]
    fn a_leaving_node_is_emptied_and_the_rest_stay_balanced() {
        let start = seeded(&["a", "b", "c", "d"], 8, 2);
        let members = names(&["a", "b", "c"]); // d leaves
        let (end, _) = converge(start, &members, 8, Some(2));
        assert!(end.values().all(|rs| rs.len() == 2 && !rs.contains(&"d".to_owned())), "{end:?}");
        let (replicas, leads) = loads(&end, &members);
        assert!(spread(&replicas) <= 1 && spread(&leads) <= 1, "{replicas:?} {leads:?}");
        // Every node hosting everything (no factor): the leaving node is just dropped.
        let start = seeded(&["a", "b", "c"], 3, 3);
        let (end, _) = converge(start, &names(&["a", "b"]), 3, None);
        assert!(end.values().all(|rs| rs.len() == 2), "{end:?}");
    }

    #[test]
    fn a_balanced_placement_is_left_alone() {
        let start = seeded(&["a", "b", "c"], 6, 2);
        let t = target(&start, &names(&["a", "b", "c"]), &names(&["a", "b", "c"]), 6, Some(2), &BTreeSet::new());
        assert_eq!(t, start);
        // A pinned partition keeps its replicas, even on a node that leaves.
        let t = target(&start, &names(&["a", "b"]), &names(&["a", "b"]), 6, Some(2), &[2].into());
        assert_eq!(t[&2], start[&2]);
        assert!(t.iter().all(|(p, rs)| *p == 2 || !rs.contains(&"c".to_owned())), "{t:?}");
        // A dead member keeps its replicas and gets no new ones.
        let start = seeded(&["a", "b"], 4, 1);
        let t = target(&start, &names(&["a", "b", "c"]), &names(&["a", "b"]), 4, Some(1), &BTreeSet::new());
        assert_eq!(t, start, "nothing moves onto the dead node c");
    }

    #[test]
    fn a_table_moved_away_from_the_seed_is_balanced_even_with_the_configured_members() {
        let peers = names(&["a", "b", "c"]);
        let seed = seeded(&["a", "b", "c"], 3, 2);
        let configured = |p: u32| seed[&p].clone();
        assert!(as_configured(&peers, peers.iter(), &seed, configured), "as configured: left alone");
        assert!(!as_configured(&names(&["a", "b", "c", "d"]), peers.iter(), &seed, configured), "a node joined");
        assert!(!as_configured(&names(&["a", "b"]), peers.iter(), &seed, configured), "a node is leaving");
        // c was decommissioned (its replicas moved to a and b), then re-added: the members are
        // the configured ones again, but c hosts nothing.
        let emptied: BTreeMap<u32, Vec<String>> = seed
            .iter()
            .map(|(p, rs)| (*p, rs.iter().map(|n| if n == "c" { "a".to_owned() } else { n.clone() }).collect()))
            .map(|(p, mut rs): (u32, Vec<String>)| {
                rs.dedup();
                if rs.len() < 2 {
                    rs.push("b".to_owned());
                }
                (p, rs)
            })
            .collect();
        assert!(emptied.values().all(|rs| !rs.contains(&"c".to_owned())));
        assert!(!as_configured(&peers, peers.iter(), &emptied, configured), "moved: placement acts");
        let (end, _) = converge(emptied, &peers, 3, Some(2));
        let (replicas, _) = loads(&end, &peers);
        assert!(replicas.iter().all(|&n| n >= 1), "c hosts replicas again: {end:?}");
        assert!(spread(&replicas) <= 1, "{replicas:?}");
    }

    #[test]
    fn steps_add_then_hand_over_then_remove() {
        let cur = vec!["a".to_owned(), "b".to_owned()];
        let tgt = vec!["c".to_owned(), "b".to_owned()];
        let all_ready = |_: &str| true;
        let none_dead = |_: &str| false;
        assert_eq!(
            next_step(&cur, &tgt, Some("a"), all_ready, none_dead),
            Step::Write(vec!["a".into(), "b".into(), "c".into()])
        );
        let union = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(next_step(&union, &tgt, Some("a"), |n| n != "c", none_dead), Step::Wait, "c still restoring");
        assert_eq!(next_step(&union, &tgt, Some("a"), all_ready, none_dead), Step::Handover("c".into()));
        assert_eq!(next_step(&union, &tgt, Some("b"), all_ready, none_dead), Step::Write(tgt.clone()));
        // A replica of the target that is down holds the move: removing a would leave one ready
        // copy where there are two. A dead master being removed is failover's business.
        assert_eq!(next_step(&union, &tgt, Some("b"), |n| n != "b", |n| n == "b"), Step::Wait);
        assert_eq!(next_step(&union, &tgt, Some("b"), |n| n != "c", |n| n == "c"), Step::Wait, "c died restoring");
        assert_eq!(next_step(&union, &tgt, Some("a"), all_ready, |n| n == "a"), Step::Write(tgt.clone()));
        // Decommissioning a dead node: its copy was not ready anyway.
        let (cur, tgt2) = (vec!["x".to_owned(), "b".to_owned(), "c".to_owned()], vec!["b".to_owned(), "c".to_owned()]);
        assert_eq!(next_step(&cur, &tgt2, Some("b"), |n| n != "x", |n| n == "x"), Step::Write(tgt2.clone()));
        assert_eq!(next_step(&tgt, &tgt, Some("c"), all_ready, none_dead), Step::Done);
    }
}
