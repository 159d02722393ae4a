//! The HNSW graph (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
//! Hierarchical Navigable Small World graphs", 2018): layered neighbour lists over slots, kept in flat
//! fixed-size blocks and searched without locks, per-node allocations or hashing. [`insert`](crate::index::insert)
//! grows it in place.
//!
//! Each list is a block of atomic words: the neighbour count, then room for the list's capacity (`2M`
//! on layer 0, `M` above). Relaxed atomic loads and stores compile to plain moves; they let parallel
//! insertion rewrite one list while other threads read it. A reader may then see a mix of the old and
//! new list, which is harmless: every word ever written there is a valid slot, and counts are clamped
//! to the capacity.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::index::quantize::CodeQuery;
use crate::index::simd::{Kernels, SimdWork, prefetch, with_best_simd};
use crate::index::slots::{CodeSpace, Measure, Ranked, Slots, Space, TopK};

/// Marks a slot with no lists above layer 0 in [`SearchGraph::upper_of`].
const NONE: u32 = u32::MAX;

/// The highest layer a slot can reach. Levels are drawn with `P(level ≥ l) = M^-l`, so with `M ≥ 2`
/// and up to 2^32 slots, higher layers are never reached in practice; the cap makes the file's `u8`
/// layer count safe.
pub(crate) const MAX_LEVEL: u8 = 32;

/// A layered proximity graph over slots `0..len`.
#[derive(Default)]
pub(crate) struct SearchGraph {
    /// Neighbours kept per list above layer 0 (`M`); layer 0 keeps `2M`.
    m: usize,
    /// Layer 0: per slot, a block of `1 + 2M` words.
    layer0: Vec<AtomicU32>,
    /// Each slot's top layer.
    levels: Vec<u8>,
    /// For a slot above layer 0, its index in `upper`; [`NONE`] for the others.
    upper_of: Vec<u32>,
    /// For each slot above layer 0, one block of `1 + M` words per layer `1..=level`.
    upper: Vec<Box<[AtomicU32]>>,
    /// Where searches start: a slot on the top layer.
    entry: Option<u32>,
    /// How many layer-0 lists name each slot. Insertion keeps every slot but the entry named at least
    /// once, so that every vector can be found.
    in_degree: Vec<AtomicU32>,
}

impl std::fmt::Debug for SearchGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchGraph")
            .field("m", &self.m)
            .field("len", &self.len())
            .field("entry", &self.entry)
            .field("max_level", &self.max_level())
            .finish()
    }
}

impl SearchGraph {
    /// An empty graph keeping `m` neighbours per node above layer 0 and `2m` on it.
    pub(crate) fn new(m: usize) -> Self {
        Self { m, ..Self::default() }
    }

    /// A graph from plain neighbour lists: `layer0[s]` and `upper[s][layer - 1]` for each slot `s`.
    /// Refused, with the reason, if a list is too long or names a slot that does not exist, or if the
    /// entry is not on the top layer.
    pub(crate) fn from_lists(
        m: usize,
        layer0: Vec<Vec<u32>>,
        upper: Vec<Vec<Vec<u32>>>,
        entry: u32,
    ) -> Result<Self, &'static str> {
        let count = layer0.len();
        if upper.len() != count {
            return Err("the layer lists cover different slots");
        }
        let in_range = |n: &u32| (*n as usize) < count;
        if !layer0.iter().chain(upper.iter().flatten()).flatten().all(in_range) {
            return Err("the graph refers to vectors that do not exist");
        }
        if layer0.iter().any(|list| list.len() > 2 * m) || upper.iter().flatten().any(|list| list.len() > m) {
            return Err("a neighbour list is longer than the index keeps");
        }
        let mut graph = Self::new(m);
        graph.grow(upper.iter().map(|layers| u8::try_from(layers.len()).unwrap_or(u8::MAX)));
        if graph.levels.iter().any(|&level| level > MAX_LEVEL) {
            return Err("a vector is on too many layers");
        }
        if count > 0 {
            if !in_range(&entry) {
                return Err("the graph refers to vectors that do not exist");
            }
            if graph.levels.iter().any(|&level| level > graph.levels[entry as usize]) {
                return Err("the entry point is below the top layer");
            }
            graph.entry = Some(entry);
        }
        for (slot, list) in layer0.iter().enumerate() {
            graph.set(slot as u32, 0, list);
        }
        for (slot, layers) in upper.iter().enumerate() {
            for (layer, list) in layers.iter().enumerate() {
                graph.set(slot as u32, layer + 1, list);
            }
        }
        graph.count_in_degrees();
        Ok(graph)
    }

    /// Recounts [`in_degree`](Self::in_degree) from the layer-0 lists.
    fn count_in_degrees(&mut self) {
        let mut counts = vec![0u32; self.len()];
        for slot in 0..self.len() as u32 {
            for n in self.neighbours(slot, 0) {
                let n = n.load(Relaxed) as usize;
                counts[n] = counts[n].saturating_add(1);
            }
        }
        self.in_degree = counts.into_iter().map(AtomicU32::new).collect();
    }

    /// How many layer-0 lists name `slot`; kept up to date by [`insert`](crate::index::insert), which
    /// changes it with [`add_in_degree`](Self::add_in_degree).
    #[inline(always)]
    pub(crate) fn in_degree(&self, slot: u32) -> u32 {
        self.in_degree[slot as usize].load(Relaxed)
    }

    /// Adds `delta` (which may be negative) to `slot`'s in-degree; returns the new value.
    #[inline(always)]
    pub(crate) fn add_in_degree(&self, slot: u32, delta: i32) -> u32 {
        let counter = &self.in_degree[slot as usize];
        counter.fetch_add(delta as u32, Relaxed).wrapping_add(delta as u32)
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    pub(crate) fn m(&self) -> usize {
        self.m
    }

    pub(crate) fn entry(&self) -> Option<u32> {
        self.entry
    }

    pub(crate) fn set_entry(&mut self, entry: Option<u32>) {
        self.entry = entry;
    }

    pub(crate) fn level(&self, slot: u32) -> u8 {
        self.levels[slot as usize]
    }

    pub(crate) fn max_level(&self) -> u8 {
        self.entry.map_or(0, |entry| self.level(entry))
    }

    /// Room for `additional` more slots.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.layer0.reserve(additional * (1 + 2 * self.m));
        self.levels.reserve(additional);
        self.upper_of.reserve(additional);
        self.in_degree.reserve(additional);
    }

    /// Appends slots with these top layers and empty lists.
    pub(crate) fn grow(&mut self, levels: impl IntoIterator<Item = u8>) {
        for level in levels {
            self.layer0.extend((0..1 + 2 * self.m).map(|_| AtomicU32::new(0)));
            self.levels.push(level);
            self.in_degree.push(AtomicU32::new(0));
            if level == 0 {
                self.upper_of.push(NONE);
            } else {
                self.upper_of.push(self.upper.len() as u32);
                let words = usize::from(level) * (1 + self.m);
                self.upper.push((0..words).map(|_| AtomicU32::new(0)).collect());
            }
        }
    }

    /// The block holding `slot`'s list on `layer` (count, then room for the neighbours); empty if the
    /// slot does not reach that layer.
    #[inline(always)]
    fn block(&self, slot: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let width = 1 + 2 * self.m;
            let start = slot as usize * width;
            &self.layer0[start..start + width]
        } else {
            match self.upper_of[slot as usize] {
                NONE => &[],
                at => {
                    let width = 1 + self.m;
                    let blocks = &self.upper[at as usize];
                    let start = (layer - 1) * width;
                    blocks.get(start..start + width).unwrap_or(&[])
                }
            }
        }
    }

    /// `slot`'s neighbours on `layer`.
    #[inline(always)]
    pub(crate) fn neighbours(&self, slot: u32, layer: usize) -> &[AtomicU32] {
        match self.block(slot, layer).split_first() {
            Some((count, room)) => &room[..(count.load(Relaxed) as usize).min(room.len())],
            None => &[],
        }
    }

    /// `slot`'s neighbours on `layer`, copied out.
    pub(crate) fn neighbour_list(&self, slot: u32, layer: usize) -> Vec<u32> {
        self.neighbours(slot, layer).iter().map(|n| n.load(Relaxed)).collect()
    }

    /// How many neighbours a list on `layer` can hold.
    #[inline(always)]
    pub(crate) fn capacity(&self, layer: usize) -> usize {
        if layer == 0 { 2 * self.m } else { self.m }
    }

    /// Replaces `slot`'s list on `layer` (cut to its capacity). The entries are stored before the count,
    /// so a concurrent reader sees valid slots whichever it loads first.
    #[inline(always)]
    pub(crate) fn set(&self, slot: u32, layer: usize, list: &[u32]) {
        if let Some((count, room)) = self.block(slot, layer).split_first() {
            let n = list.len().min(room.len());
            for (word, &neighbour) in room.iter().zip(&list[..n]) {
                word.store(neighbour, Relaxed);
            }
            count.store(n as u32, Relaxed);
        }
    }

    /// Greedy descent from `from` through layers `top` down to `bottom + 1`: on each, moves to the
    /// nearest neighbour that `usable` admits while that gets closer to `query`.
    #[inline(always)]
    pub(crate) fn descend<M: Measure>(
        &self,
        space: M,
        query: &M::Query,
        mut from: (f32, u32),
        (top, bottom): (usize, usize),
        usable: impl Fn(u32) -> bool,
    ) -> (f32, u32) {
        for layer in (bottom + 1..=top).rev() {
            loop {
                let mut moved = false;
                for next in self.neighbours(from.1, layer) {
                    let next = next.load(Relaxed);
                    let d = space.rank(query, next);
                    if d < from.0 && usable(next) {
                        from = (d, next);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        from
    }

    /// Beam search of width `ef` on `layer` (algorithm 2 of the paper): from `entries`, keeps expanding the nearest
    /// unexpanded slot found until it is farther than the `ef`-th nearest accepted one. Slots that
    /// `accept` refuses are walked through but not returned. `visited` must be reset by the caller,
    /// which may pre-mark slots to skip. The nearest accepted slots are left in `scratch.results`.
    #[inline(always)]
    pub(crate) fn beam<M: Measure>(
        &self,
        space: M,
        query: &M::Query,
        entries: &[(f32, u32)],
        (ef, layer): (usize, usize),
        accept: Option<&dyn Fn(u32) -> bool>,
        scratch: &mut Scratch,
    ) {
        let Scratch {
            visited,
            fresh,
            candidates,
            results,
            ..
        } = scratch;
        candidates.clear();
        results.clear();
        for &(d, slot) in entries {
            if visited.insert(slot) {
                candidates.push(Reverse(Ranked(d, slot)));
                if accept.is_none_or(|accept| accept(slot)) {
                    results.push(Ranked(d, slot));
                }
            }
        }
        while results.len() > ef {
            results.pop();
        }
        while let Some(Reverse(Ranked(d, node))) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|worst| d > worst.0) {
                break;
            }
            // First mark the unvisited neighbours and start loading their vectors, then compute their
            // distances: the loads overlap instead of each waiting for memory in turn.
            fresh.clear();
            for next in self.neighbours(node, layer) {
                let next = next.load(Relaxed);
                if visited.insert(next) {
                    space.prefetch(next);
                    fresh.push(next);
                }
            }
            for &next in fresh.iter() {
                let dn = space.rank(query, next);
                let worst = results.peek().map_or(f32::INFINITY, |w| w.0);
                if results.len() < ef || dn < worst {
                    candidates.push(Reverse(Ranked(dn, next)));
                    if accept.is_none_or(|accept| accept(next)) {
                        results.push(Ranked(dn, next));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            // The nearest candidate is most likely expanded next: start loading its neighbour list.
            if let Some(Reverse(Ranked(_, next))) = candidates.peek() {
                prefetch(self.block(*next, layer));
            }
        }
    }

    /// A breadth-first order of the slots from the entry point (then from each slot not reached, in
    /// slot order): `order[new] = old`. Slots searched one after another then sit near each other in
    /// memory, so a search touches fewer pages and cache lines.
    pub(crate) fn locality_order(&self) -> Vec<u32> {
        let n = self.len();
        let mut seen = vec![false; n];
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let roots = self.entry.into_iter().chain(0..n as u32);
        for root in roots {
            if seen[root as usize] {
                continue;
            }
            seen[root as usize] = true;
            let mut next = order.len();
            order.push(root);
            while next < order.len() {
                let node = order[next];
                next += 1;
                for neighbour in self.neighbours(node, 0) {
                    let neighbour = neighbour.load(Relaxed);
                    if !seen[neighbour as usize] {
                        seen[neighbour as usize] = true;
                        order.push(neighbour);
                    }
                }
            }
        }
        order
    }

    /// The `k` nearest slots to `query` with beam width `ef`: greedy through the upper layers, then a
    /// beam on layer 0. Only slots that `accept` admits enter the results (all of them without it); the
    /// others are still walked through.
    pub(crate) fn search(
        &self,
        slots: &Slots,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(f32, u32)> {
        with_scratch(|scratch| {
            with_best_simd(Search {
                graph: self,
                slots,
                query,
                k,
                ef,
                accept,
                scratch,
            })
        })
    }
}

/// One search, as [`SimdWork`].
struct Search<'a> {
    graph: &'a SearchGraph,
    slots: &'a Slots,
    query: &'a [f32],
    k: usize,
    ef: usize,
    accept: Option<&'a dyn Fn(u32) -> bool>,
    scratch: &'a mut Scratch,
}

impl SimdWork for Search<'_> {
    type Output = Vec<(f32, u32)>;

    #[inline(always)]
    fn run<K: Kernels>(self, kernels: K) -> Self::Output {
        let Search {
            graph,
            slots,
            query,
            k,
            ef,
            accept,
            scratch,
        } = self;
        let Some(entry) = graph.entry else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let space = Space::new(slots, kernels);
        let top_layer = usize::from(graph.max_level());
        scratch.visited.reset(graph.len());
        let mut top = TopK::new(k);
        if let Some(codes) = slots.searchable_codes() {
            // Walk with the codes, then re-rank the beam's finds with the full vectors.
            let coded = CodeSpace {
                metric: slots.metric,
                codes,
            };
            let Some(scheme) = codes.scheme.as_ref() else {
                return Vec::new();
            };
            let prepared = CodeQuery::new(scheme, slots.metric, query);
            let start = (coded.rank(&prepared, entry), entry);
            let start = graph.descend(coded, &prepared, start, (top_layer, 0), |_| true);
            graph.beam(coded, &prepared, &[start], (ef.max(k), 0), accept, scratch);
            for &Ranked(_, slot) in scratch.results.iter() {
                top.offer(space.rank(query, slot), slot);
            }
        } else {
            let start = (space.rank(query, entry), entry);
            let start = graph.descend(space, query, start, (top_layer, 0), |_| true);
            graph.beam(space, query, &[start], (ef.max(k), 0), accept, scratch);
            for &Ranked(d, slot) in scratch.results.iter() {
                top.offer(d, slot);
            }
        }
        top.into_sorted()
    }
}

/// Per-thread working memory for searches and insertions, reused from one to the next.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) visited: Visited,
    /// The unvisited neighbours of the slot being expanded.
    fresh: Vec<u32>,
    candidates: BinaryHeap<Reverse<Ranked>>,
    /// The nearest accepted slots [`SearchGraph::beam`] found, farthest on top.
    pub(crate) results: BinaryHeap<Ranked>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `work` with this thread's scratch space. It is taken out of the thread-local for the call, so
/// that `work` (and the SIMD code inside it) is compiled inline rather than inside a `with` closure.
pub(crate) fn with_scratch<T>(work: impl FnOnce(&mut Scratch) -> T) -> T {
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let output = work(&mut scratch);
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
    output
}

/// A visited set, cleared in O(1) by bumping a generation number.
#[derive(Default)]
pub(crate) struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    /// Clears the set and makes room for slots `0..len`.
    pub(crate) fn reset(&mut self, len: usize) {
        if self.marks.len() < len {
            self.marks.resize(len, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// Marks `slot`; false when it was already marked.
    #[inline(always)]
    pub(crate) fn insert(&mut self, slot: u32) -> bool {
        let mark = &mut self.marks[slot as usize];
        if *mark == self.generation {
            false
        } else {
            *mark = self.generation;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small graph: 0 → 2 → 4, 1 → 3, 4 → 0; entry 2, which with 4 reaches layer 1.
    fn graph() -> SearchGraph {
        let layer0 = vec![vec![2], vec![3], vec![4], vec![], vec![0]];
        let upper = vec![vec![], vec![], vec![vec![4]], vec![], vec![vec![2]]];
        SearchGraph::from_lists(2, layer0, upper, 2).unwrap()
    }

    #[test]
    fn the_locality_order_is_breadth_first_from_the_entry_then_the_rest() {
        assert_eq!(graph().locality_order(), vec![2, 4, 0, 1, 3]);
    }

    #[test]
    fn lists_that_do_not_fit_the_graph_are_refused() {
        let too_long = vec![vec![1, 1, 1, 1, 1], vec![0]];
        assert!(SearchGraph::from_lists(2, too_long, vec![vec![], vec![]], 0).is_err());
        let out_of_range = vec![vec![7], vec![0]];
        assert!(SearchGraph::from_lists(2, out_of_range, vec![vec![], vec![]], 0).is_err());
        let low_entry = vec![vec![1], vec![0]];
        assert!(SearchGraph::from_lists(2, low_entry, vec![vec![], vec![vec![0]]], 0).is_err());
        let upper_too_long = vec![vec![1], vec![0]];
        assert!(SearchGraph::from_lists(2, upper_too_long, vec![vec![vec![1, 1, 1]], vec![]], 0).is_err());
    }
}
