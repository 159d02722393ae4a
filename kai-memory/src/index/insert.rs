//! Insertion into the HNSW graph (algorithms 1 and 4 of Malkov & Yashunin), in parallel and in place.
//!
//! Each new slot draws a top layer, descends greedily from the entry point to it, then on each layer
//! from there down runs a beam search of width `ef_construction`, keeps `M` of the slots found with the
//! paper's diversity heuristic, and links back from each of them. A neighbour list that is full is
//! re-selected with the same heuristic.
//!
//! Threads insert different slots at once: list writes take a lock (one of a fixed set, chosen by
//! slot), reads take none (see the graph module on why a mixed read is harmless), and the entry point
//! sits behind a mutex read once per insertion. A slot another thread is still inserting has its lists
//! on the layers above the one being built but not yet below: such a slot can be linked to, but is
//! never a starting point for a lower layer, where its list may still be empty (starting a descent or
//! beam there would end it at once and leave the new slot with a single neighbour).
//!
//! Re-selecting a full list can drop the last link to a slot, leaving it unreachable: on 2,000 random
//! 8-d vectors with `M = 6`, a few slots in every build. Such orphans are recorded as it happens and
//! linked again once the batch is in (see [`Builder::reconnect_orphans`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::index::distance::Metric;
use crate::index::graph::{MAX_LEVEL, Scratch, SearchGraph};
use crate::index::simd::{Kernels, SimdWork};
use crate::index::slots::{Ranked, Slots, Space};

/// Locks guarding list writes; slot `s` uses `LIST_LOCKS[s % 4096]`. Each insertion holds at most one
/// at a time, so they cannot deadlock. Shared by every index: a stripe only serialises two writes,
/// and a static set costs nothing per call (a single insert would otherwise build 4,096 of them).
static LIST_LOCKS: [Mutex<()>; 4096] = [const { Mutex::new(()) }; 4096];

/// Inserts slots `range` of `slots` (already stored) into `graph`, in parallel.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn insert(graph: &mut SearchGraph, slots: &Slots, range: std::ops::Range<u32>, ef_construction: usize) {
    use crate::index::{graph::with_scratch, simd::with_best_simd};
    use rayon::prelude::*;
    let Some(builder) = Builder::prepare(graph, slots, &range, ef_construction) else {
        return;
    };
    range
        .into_par_iter()
        .for_each(|slot| with_scratch(|scratch| with_best_simd(Insert(&builder, slot, scratch))));
    // Rare and short: the portable kernels do.
    builder.reconnect_orphans(Space::new(slots, crate::index::simd::Portable));
    let entry = builder.entry.into_inner().unwrap_or_else(PoisonError::into_inner);
    graph.set_entry(entry);
}

/// The top layer of slot `slot`: `floor(-ln(u) / ln(M))` for `u` uniform in (0, 1], drawn from a hash of
/// the slot so that a rebuild from the same vectors draws the same layers.
fn level_of(slot: u32, m: usize) -> u8 {
    // splitmix64's finaliser: consecutive inputs give unrelated outputs.
    let mut z = u64::from(slot).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let level = (-uniform.ln() / (m as f64).ln()).floor();
    level.min(f64::from(MAX_LEVEL)) as u8
}

/// What the inserting threads share.
struct Builder<'a> {
    graph: &'a SearchGraph,
    slots: &'a Slots,
    ef_construction: usize,
    entry: Mutex<Option<u32>>,
    /// Slots whose layer-0 in-degree fell to zero during the batch.
    orphans: Mutex<Vec<u32>>,
    /// The first slot of the batch, and for each slot of the batch whether its insertion is complete.
    first: u32,
    finished: Vec<AtomicBool>,
}

impl<'a> Builder<'a> {
    /// Grows `graph` to cover `range` (with each new slot's layers drawn), and returns the shared state
    /// for inserting them; `None` when the range is empty.
    fn prepare(
        graph: &'a mut SearchGraph,
        slots: &'a Slots,
        range: &std::ops::Range<u32>,
        ef_construction: usize,
    ) -> Option<Self> {
        if range.is_empty() {
            return None;
        }
        let m = graph.m();
        graph.reserve(range.len());
        graph.grow(range.clone().map(|slot| level_of(slot, m)));
        let entry = graph.entry();
        Some(Self {
            graph,
            slots,
            ef_construction,
            entry: Mutex::new(entry),
            orphans: Mutex::new(Vec::new()),
            first: range.start,
            finished: range.clone().map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// Whether `slot` has every list it will have: it came before the batch or has been inserted.
    #[inline(always)]
    fn finished(&self, slot: u32) -> bool {
        slot.checked_sub(self.first)
            .and_then(|i| self.finished.get(i as usize))
            .is_none_or(|done| done.load(Ordering::Acquire))
    }

    /// Runs `write` holding the lock for `slot`'s lists.
    #[inline(always)]
    fn locked<T>(&self, slot: u32, write: impl FnOnce() -> T) -> T {
        let _guard = LIST_LOCKS[slot as usize % LIST_LOCKS.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        write()
    }

    /// The heuristic of algorithm 4: from `candidates` (nearest first, with their distances to the
    /// node), keeps a candidate only if it is closer to the node than to every candidate already kept,
    /// up to `max`. Lists chosen this way reach out in several directions instead of clustering.
    #[inline(always)]
    fn select<K: Kernels>(&self, space: Space<'_, K>, candidates: &[(f32, u32)], max: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(max);
        for &(distance, candidate) in candidates {
            if kept.len() == max {
                break;
            }
            if kept.iter().all(|&k| space.between(candidate, k) > distance) {
                kept.push(candidate);
            }
        }
        // The heuristic relies on the triangle inequality, which the inner product lacks: one long vector
        // is "close" to everything and would leave lists nearly empty. Under `Dot` the lists are topped
        // up with the nearest candidates it passed over (the paper's `keepPrunedConnections`), which
        // lifts recall@10 at ef=64 on 6,000 clustered 32-d vectors from 0.91 to 1.0.
        if self.slots.metric == Metric::Dot {
            for &(_, candidate) in candidates {
                if kept.len() == max {
                    break;
                }
                if !kept.contains(&candidate) {
                    kept.push(candidate);
                }
            }
        }
        kept
    }

    /// Adds `links` to `from`'s list on `layer`; a list that overflows is re-selected from the old and
    /// new links together. Keeps the layer-0 in-degrees, and records the slots it orphans.
    #[inline(always)]
    fn link<K: Kernels>(&self, space: Space<'_, K>, from: u32, links: &[u32], layer: usize) {
        self.locked(from, || {
            let before = self.graph.neighbour_list(from, layer);
            let mut list = before.clone();
            list.extend(links.iter().filter(|n| !before.contains(n)));
            if list.len() == before.len() {
                return;
            }
            let capacity = self.graph.capacity(layer);
            if list.len() > capacity {
                let mut candidates: Vec<(f32, u32)> = list.iter().map(|&n| (space.between(from, n), n)).collect();
                candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                list = self.select(space, &candidates, capacity);
            }
            self.graph.set(from, layer, &list);
            if layer == 0 {
                for &added in list.iter().filter(|n| !before.contains(n)) {
                    self.graph.add_in_degree(added, 1);
                }
                for &dropped in before.iter().filter(|n| !list.contains(n)) {
                    if self.graph.add_in_degree(dropped, -1) == 0 {
                        self.orphans
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(dropped);
                    }
                }
            }
        });
    }

    /// Links every recorded orphan that still has no layer-0 in-link (other than the entry point) from
    /// one of its neighbours: the nearest with a free place in its list, else the nearest whose list
    /// has a link that other lists also name, pointing the same way as the orphan (the one nearest to
    /// it), which the orphan then takes the place of. Far links are left alone: they are the ones
    /// that carry searches between regions.
    fn reconnect_orphans<K: Kernels>(&self, space: Space<'_, K>) {
        let orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(PoisonError::into_inner));
        let entry = *self.entry.lock().unwrap_or_else(PoisonError::into_inner);
        for orphan in orphans {
            if self.graph.in_degree(orphan) > 0 || Some(orphan) == entry {
                continue;
            }
            let mut hosts: Vec<(f32, u32)> = self
                .graph
                .neighbour_list(orphan, 0)
                .into_iter()
                .map(|n| (space.between(orphan, n), n))
                .collect();
            hosts.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let capacity = self.graph.capacity(0);
            let with_room = hosts
                .iter()
                .map(|&(_, host)| (host, self.graph.neighbour_list(host, 0)))
                .find(|(_, list)| list.len() < capacity);
            let (host, list) = match with_room {
                Some((host, mut list)) => {
                    list.push(orphan);
                    (host, list)
                }
                None => {
                    let replaced = hosts.iter().find_map(|&(_, host)| {
                        let mut list = self.graph.neighbour_list(host, 0);
                        let at = (0..list.len())
                            .filter(|&i| self.graph.in_degree(list[i]) >= 2)
                            .min_by(|&i, &j| {
                                space
                                    .between(orphan, list[i])
                                    .total_cmp(&space.between(orphan, list[j]))
                            })?;
                        self.graph.add_in_degree(list[at], -1);
                        list[at] = orphan;
                        Some((host, list))
                    });
                    let Some(replaced) = replaced else {
                        continue;
                    };
                    replaced
                }
            };
            self.graph.set(host, 0, &list);
            self.graph.add_in_degree(orphan, 1);
        }
    }

    /// Inserts one slot.
    #[inline(always)]
    fn insert<K: Kernels>(&self, space: Space<'_, K>, slot: u32, scratch: &mut Scratch) {
        let level = self.graph.level(slot);
        let entry = {
            let mut entry = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
            match *entry {
                Some(entry) => entry,
                None => {
                    *entry = Some(slot);
                    drop(entry);
                    self.finish(slot);
                    return;
                }
            }
        };
        let top = self.graph.level(entry);
        let query = space.vector(slot);
        let start = (space.between(slot, entry), entry);
        let layers = (usize::from(top), usize::from(level));
        let start = self.graph.descend(space, query, start, layers, |n| self.finished(n));
        let mut entries = vec![start];
        for layer in (0..=usize::from(level.min(top))).rev() {
            scratch.visited.reset(self.graph.len());
            // The slot itself may already be linked from a slot another thread inserted.
            scratch.visited.insert(slot);
            self.graph
                .beam(space, query, &entries, (self.ef_construction, layer), None, scratch);
            entries.clear();
            entries.extend(scratch.results.iter().map(|&Ranked(d, s)| (d, s)));
            entries.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let chosen = self.select(space, &entries, self.graph.m());
            // Threads that found this slot on a higher layer may have linked from it already.
            self.link(space, slot, &chosen, layer);
            for &neighbour in &chosen {
                self.link(space, neighbour, &[slot], layer);
            }
            entries.retain(|&(_, n)| self.finished(n));
            if entries.is_empty() {
                entries.push(start);
            }
        }
        if level > top {
            let mut entry = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
            if entry.is_none_or(|current| level > self.graph.level(current)) {
                *entry = Some(slot);
            }
        }
        self.finish(slot);
    }

    fn finish(&self, slot: u32) {
        if let Some(done) = slot.checked_sub(self.first).and_then(|i| self.finished.get(i as usize)) {
            done.store(true, Ordering::Release);
        }
    }
}

/// One insertion, as [`SimdWork`].
struct Insert<'b, 'a>(&'b Builder<'a>, u32, &'b mut Scratch);

impl SimdWork for Insert<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run<K: Kernels>(self, kernels: K) {
        self.0.insert(Space::new(self.0.slots, kernels), self.1, self.2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_geometric_law() {
        let n = 200_000u32;
        let m = 16;
        let above = |l: u8| (0..n).filter(|&s| level_of(s, m) >= l).count() as f64 / f64::from(n);
        // P(level ≥ 1) = 1/16, P(level ≥ 2) = 1/256.
        assert!((above(1) - 1.0 / 16.0).abs() < 0.005, "{}", above(1));
        assert!((above(2) - 1.0 / 256.0).abs() < 0.001, "{}", above(2));
        assert_eq!(level_of(7, m), level_of(7, m));
    }

    #[test]
    fn every_inserted_slot_is_reachable_and_lists_stay_within_capacity() {
        let mut slots = Slots::new(Metric::L2, 8);
        let mut state = 1u64;
        for i in 0..2_000u64 {
            let vector: Vec<f32> = (0..8)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            slots.push(i, &vector).unwrap();
        }
        let mut graph = SearchGraph::new(6);
        insert(&mut graph, &slots, 0..1_000, 40);
        insert(&mut graph, &slots, 1_000..2_000, 40);
        assert_eq!(graph.len(), 2_000);
        let entry = graph.entry().unwrap();
        assert!((0..2_000).all(|s| graph.level(s) <= graph.level(entry)));
        for slot in 0..2_000u32 {
            for layer in 0..=usize::from(graph.level(slot)) {
                let list = graph.neighbour_list(slot, layer);
                assert!(list.len() <= graph.capacity(layer));
                assert!(!list.contains(&slot));
            }
        }
        let mut in_degree = vec![0u32; 2_000];
        for slot in 0..2_000u32 {
            for n in graph.neighbour_list(slot, 0) {
                in_degree[n as usize] += 1;
            }
        }
        assert!((0..2_000u32).all(|s| graph.in_degree(s) == in_degree[s as usize]));
        let order = graph.locality_order();
        let reached_from_entry = {
            let mut seen = vec![false; 2_000];
            let mut stack = vec![entry];
            seen[entry as usize] = true;
            while let Some(node) = stack.pop() {
                for n in graph.neighbour_list(node, 0) {
                    if !std::mem::replace(&mut seen[n as usize], true) {
                        stack.push(n);
                    }
                }
            }
            seen.iter().filter(|&&s| s).count()
        };
        assert_eq!(order.len(), 2_000);
        assert!(reached_from_entry >= 2_000, "{reached_from_entry} of 2000 reachable");
    }
}
