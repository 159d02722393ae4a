//! The search side of the HNSW index: the graph hnsw_rs built, copied into flat arrays (CSR neighbour
//! lists, vectors contiguous by slot) and searched without locks, per-node allocations or hashing.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[cfg(not(target_arch = "wasm32"))]
use crate::index::distance::BuildDistance;
use crate::index::distance::Metric;
#[cfg(not(target_arch = "wasm32"))]
use crate::index::simd::Rank;
use crate::index::simd::{SimdWork, prefetch, with_best_simd};
use crate::index::slots::{Ranked, Slots, TopK};

/// A layered proximity graph over slots `0..len`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SearchGraph {
    /// Layer-0 neighbours of slot `s`: `neighbours[offsets[s]..offsets[s + 1]]`.
    pub(crate) offsets: Vec<u32>,
    pub(crate) neighbours: Vec<u32>,
    /// Neighbours on layers 1.. for the few slots that reach them: `upper[s][layer - 1]`.
    pub(crate) upper: Vec<Vec<Vec<u32>>>,
    pub(crate) entry: u32,
    pub(crate) max_level: u8,
}

impl SearchGraph {
    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Copies the graph out of hnsw_rs. Slots are hnsw_rs data ids.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_hnsw(hnsw: &hnsw_rs::hnsw::Hnsw<'static, f32, BuildDistance>, slots: usize) -> Self {
        let mut layer0: Vec<Vec<u32>> = vec![Vec::new(); slots];
        let mut upper: Vec<Vec<Vec<u32>>> = vec![Vec::new(); slots];
        let mut entry = None;
        let max_level = hnsw.get_max_level_observed();
        for point in hnsw.get_point_indexation() {
            let slot = point.get_origin_id();
            if slot >= slots {
                continue;
            }
            let level = point.get_point_id().0;
            if level == max_level && entry.is_none() {
                entry = Some(slot as u32);
            }
            let neighbourhood = point.get_neighborhood_id();
            for (layer, list) in neighbourhood.iter().enumerate().take(usize::from(level) + 1) {
                let ids: Vec<u32> = list
                    .iter()
                    .map(|n| n.d_id as u32)
                    .filter(|&id| (id as usize) < slots)
                    .collect();
                if layer == 0 {
                    layer0[slot] = ids;
                } else {
                    upper[slot].push(ids);
                }
            }
        }
        let (offsets, neighbours) = compressed(layer0);
        Self {
            offsets,
            neighbours,
            upper,
            entry: entry.unwrap_or(0),
            max_level,
        }
    }

    /// Re-selects every layer-0 neighbour list with the HNSW paper's heuristic (Malkov & Yashunin,
    /// algorithm 4): from a node's neighbours, the nodes that list it and its neighbours' neighbours,
    /// nearest first, a candidate is kept only if it is closer to the node than to every neighbour
    /// already kept, up to `max_degree`. hnsw_rs keeps plain nearest lists; diverse lists reach distant
    /// regions in fewer hops, so the same recall needs a smaller beam, and the two-hop candidates find
    /// near nodes that hnsw_rs's insertion missed (recall@10 at ef=16 on 100k clustered vectors: 0.75
    /// from hnsw_rs's lists re-selected among neighbours alone, 0.80 with two hops; hnswlib 0.795).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn diversify(&mut self, slots: &Slots, max_degree: usize) {
        use rayon::prelude::*;
        let n = self.len();
        let mut reverse: Vec<Vec<u32>> = vec![Vec::new(); n];
        for node in 0..n as u32 {
            for &next in self.layer0(node) {
                reverse[next as usize].push(node);
            }
        }
        let metric = slots.metric;
        let lists: Vec<Vec<u32>> = (0..n as u32)
            .into_par_iter()
            .map(|node| {
                if !slots.live[node as usize] && self.layer0(node).is_empty() {
                    return Vec::new();
                }
                let here = slots.vector(node);
                let near: Vec<u32> = self
                    .layer0(node)
                    .iter()
                    .chain(&reverse[node as usize])
                    .copied()
                    .collect();
                let mut ids = near.clone();
                for &x in &near {
                    ids.extend_from_slice(self.layer0(x));
                }
                ids.sort_unstable();
                ids.dedup();
                let mut candidates: Vec<(f32, u32)> = ids
                    .iter()
                    .filter(|&&c| c != node)
                    .map(|&c| (with_best_simd(Rank(metric, here, slots.vector(c))), c))
                    .collect();
                candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let mut kept: Vec<u32> = Vec::with_capacity(max_degree);
                for &(distance, candidate) in &candidates {
                    if kept.len() == max_degree {
                        break;
                    }
                    let there = slots.vector(candidate);
                    if kept
                        .iter()
                        .all(|&k| with_best_simd(Rank(metric, there, slots.vector(k))) > distance)
                    {
                        kept.push(candidate);
                    }
                }
                kept
            })
            .collect();
        (self.offsets, self.neighbours) = compressed(lists);
    }

    /// A breadth-first order of the slots from the entry point (then from each slot not reached, in
    /// slot order): `order[new] = old`. Slots searched one after another then sit near each other in
    /// memory, so a search touches fewer pages and cache lines.
    pub(crate) fn locality_order(&self) -> Vec<u32> {
        let n = self.len();
        let mut seen = vec![false; n];
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let roots = std::iter::once(self.entry).chain(0..n as u32);
        for root in roots {
            if (root as usize) >= n || seen[root as usize] {
                continue;
            }
            seen[root as usize] = true;
            let mut next = order.len();
            order.push(root);
            while next < order.len() {
                let node = order[next];
                next += 1;
                for &neighbour in self.layer0(node) {
                    if !seen[neighbour as usize] {
                        seen[neighbour as usize] = true;
                        order.push(neighbour);
                    }
                }
            }
        }
        order
    }

    /// The graph and its vectors with slot `order[new]` moved to `new`.
    pub(crate) fn permuted(&self, slots: &Slots, order: &[u32]) -> (Slots, SearchGraph) {
        let mut new_of = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_of[old as usize] = new as u32;
        }
        let mut moved = Slots::new(slots.metric, slots.dimensions);
        moved.data.reserve(slots.data.len());
        let mut offsets = Vec::with_capacity(order.len() + 1);
        let mut neighbours = Vec::with_capacity(self.neighbours.len());
        let mut upper = Vec::with_capacity(order.len());
        offsets.push(0);
        for (new, &old) in order.iter().enumerate() {
            moved.data.extend_from_slice(slots.vector(old));
            moved.ids.push(slots.ids[old as usize]);
            moved.live.push(slots.live[old as usize]);
            if slots.live[old as usize] {
                moved.by_id.insert(slots.ids[old as usize], new as u32);
            }
            neighbours.extend(self.layer0(old).iter().map(|&n| new_of[n as usize]));
            offsets.push(neighbours.len() as u32);
            upper.push(
                self.upper[old as usize]
                    .iter()
                    .map(|list| list.iter().map(|&n| new_of[n as usize]).collect())
                    .collect(),
            );
        }
        let graph = SearchGraph {
            offsets,
            neighbours,
            upper,
            entry: new_of.get(self.entry as usize).copied().unwrap_or(0),
            max_level: self.max_level,
        };
        (moved, graph)
    }

    fn layer0(&self, slot: u32) -> &[u32] {
        let s = slot as usize;
        &self.neighbours[self.offsets[s] as usize..self.offsets[s + 1] as usize]
    }

    /// Best-first search: greedy through the upper layers, then a beam of width `ef` on layer 0.
    /// Only slots that `accept` admits enter the results (all of them without it); the others are still
    /// walked through.
    pub(crate) fn search(
        &self,
        slots: &Slots,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(f32, u32)> {
        // The visited set is taken out of the thread-local for the search, so that the whole loop is
        // compiled inline, with the SIMD features `with_best_simd` picks.
        let mut visited = VISITED.with(|v| std::mem::take(&mut *v.borrow_mut()));
        let found = with_best_simd(Search {
            graph: self,
            slots,
            query,
            k,
            ef,
            accept,
            visited: &mut visited,
        });
        VISITED.with(|v| *v.borrow_mut() = visited);
        found
    }
}

/// Neighbour lists in compressed sparse rows: list `s` is `neighbours[offsets[s]..offsets[s + 1]]`.
fn compressed(lists: impl IntoIterator<Item = Vec<u32>>) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0];
    let mut neighbours = Vec::new();
    for list in lists {
        neighbours.extend(list);
        offsets.push(neighbours.len() as u32);
    }
    (offsets, neighbours)
}

/// One search, as [`SimdWork`].
struct Search<'a> {
    graph: &'a SearchGraph,
    slots: &'a Slots,
    query: &'a [f32],
    k: usize,
    ef: usize,
    accept: Option<&'a dyn Fn(u32) -> bool>,
    visited: &'a mut Visited,
}

impl SimdWork for Search<'_> {
    type Output = Vec<(f32, u32)>;

    #[inline(always)]
    fn run(self) -> Self::Output {
        let Search {
            graph,
            slots,
            query,
            k,
            ef,
            accept,
            visited,
        } = self;
        if graph.len() == 0 || k == 0 {
            return Vec::new();
        }
        let metric: Metric = slots.metric;
        let distance = |slot: u32| metric.rank(query, slots.vector(slot));
        let mut current = graph.entry;
        let mut current_distance = distance(current);
        for level in (1..=usize::from(graph.max_level)).rev() {
            loop {
                let mut moved = false;
                if let Some(list) = graph.upper[current as usize].get(level - 1) {
                    for &next in list {
                        let d = distance(next);
                        if d < current_distance {
                            current_distance = d;
                            current = next;
                            moved = true;
                        }
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        let ef = ef.max(k);
        visited.reset(graph.len());
        {
            let mut candidates: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Ranked> = BinaryHeap::with_capacity(ef + 1);
            visited.insert(current);
            candidates.push(Reverse(Ranked(current_distance, current)));
            if accept.is_none_or(|accept| accept(current)) {
                results.push(Ranked(current_distance, current));
            }
            while let Some(Reverse(Ranked(d, node))) = candidates.pop() {
                if results.len() >= ef && results.peek().is_some_and(|worst| d > worst.0) {
                    break;
                }
                // First mark the unvisited neighbours and start loading their vectors, then compute
                // their distances: the loads overlap instead of each waiting for memory in turn.
                let mut fresh = std::mem::take(&mut visited.fresh);
                fresh.clear();
                for &next in graph.layer0(node) {
                    if visited.insert(next) {
                        prefetch(slots.vector(next));
                        fresh.push(next);
                    }
                }
                for &next in &fresh {
                    let dn = distance(next);
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
                visited.fresh = fresh;
                // The nearest candidate is most likely expanded next: start loading its neighbour list.
                if let Some(Reverse(Ranked(_, next))) = candidates.peek() {
                    prefetch(graph.layer0(*next));
                }
            }
            let mut top = TopK::new(k);
            for Ranked(d, slot) in results {
                top.offer(d, slot);
            }
            top.into_sorted()
        }
    }
}

/// A visited set for one thread, cleared in O(1) by bumping a generation number.
#[derive(Default)]
struct Visited {
    marks: Vec<u16>,
    generation: u16,
    /// Scratch space for the unvisited neighbours of the node being expanded.
    fresh: Vec<u32>,
}

impl Visited {
    fn reset(&mut self, len: usize) {
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
    fn insert(&mut self, slot: u32) -> bool {
        let mark = &mut self.marks[slot as usize];
        if *mark == self.generation {
            false
        } else {
            *mark = self.generation;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), generation: 0, fresh: Vec::new() }) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small graph: 0 → 2 → 4, 1 → 3, 4 → 0; entry 2.
    fn graph() -> SearchGraph {
        let (offsets, neighbours) = compressed([vec![2], vec![3], vec![4], vec![], vec![0]]);
        SearchGraph {
            offsets,
            neighbours,
            upper: vec![Vec::new(), Vec::new(), vec![vec![4]], Vec::new(), vec![vec![2]]],
            entry: 2,
            max_level: 1,
        }
    }

    #[test]
    fn the_locality_order_is_breadth_first_from_the_entry_then_the_rest() {
        assert_eq!(graph().locality_order(), vec![2, 4, 0, 1, 3]);
    }

    #[test]
    fn a_permuted_graph_keeps_every_edge_vector_and_id() {
        let graph = graph();
        let mut slots = Slots::new(Metric::L2, 1);
        for id in 0..5u64 {
            slots.push(id * 10, &[id as f32]).unwrap();
        }
        slots.remove(30);
        let order = graph.locality_order();
        let (moved, permuted) = graph.permuted(&slots, &order);
        for (new, &old) in order.iter().enumerate() {
            let new = new as u32;
            assert_eq!(moved.vector(new), slots.vector(old));
            assert_eq!(moved.ids[new as usize], slots.ids[old as usize]);
            assert_eq!(moved.live[new as usize], slots.live[old as usize]);
            let edges = |g: &SearchGraph, s: &Slots, slot: u32| -> Vec<u64> {
                g.layer0(slot).iter().map(|&n| s.ids[n as usize]).collect()
            };
            assert_eq!(edges(&permuted, &moved, new), edges(&graph, &slots, old));
        }
        assert_eq!(moved.ids[permuted.entry as usize], 20);
        assert_eq!(permuted.upper[0], vec![vec![1]]);
        assert_eq!(moved.by_id.get(&30), None);
        assert_eq!(moved.by_id.len(), 4);
    }
}
