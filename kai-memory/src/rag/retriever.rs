//! Retrieval: top-k by similarity, a distance threshold, and MMR diversification.

use std::sync::Arc;

use kai_core::EmbeddingModel;

use crate::error::Error;
use crate::index::Metric;
use crate::rag::keyword::{KeywordIndex, reciprocal_rank_fusion};
use crate::store::{Filter, MemoryStore, ScoredDocument};

/// Finds the stored chunks most relevant to a query.
#[derive(Clone)]
pub struct Retriever {
    store: Arc<dyn MemoryStore>,
    embedder: Arc<dyn EmbeddingModel>,
    k: usize,
    max_distance: Option<f32>,
    mmr_lambda: Option<f32>,
    filter: Option<Filter>,
    keywords: Option<Arc<KeywordIndex>>,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("k", &self.k)
            .field("max_distance", &self.max_distance)
            .field("mmr_lambda", &self.mmr_lambda)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Retriever {
    /// The 4 nearest chunks, no threshold, no diversification.
    pub fn new(store: Arc<dyn MemoryStore>, embedder: Arc<dyn EmbeddingModel>) -> Self {
        Self {
            store,
            embedder,
            k: 4,
            max_distance: None,
            mmr_lambda: None,
            filter: None,
            keywords: None,
        }
    }

    /// Hybrid retrieval: fuses the vector ranking with this BM25 ranking by reciprocal rank, so exact
    /// terms (names, codes, error messages) that embeddings blur still surface. Keyword hits are
    /// filtered and thresholded like vector hits, with their embeddings' distance under the store's
    /// metric.
    pub fn hybrid(mut self, keywords: Arc<KeywordIndex>) -> Self {
        self.keywords = Some(keywords);
        self
    }

    /// How many chunks to return.
    pub fn top_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Drops chunks farther than this (in the store's metric; for cosine, `1 - similarity`).
    pub fn max_distance(mut self, distance: f32) -> Self {
        self.max_distance = Some(distance);
        self
    }

    /// Diversifies with maximal marginal relevance: `lambda` 1 is pure relevance, 0 pure diversity.
    pub fn mmr(mut self, lambda: f32) -> Self {
        self.mmr_lambda = Some(lambda.clamp(0.0, 1.0));
        self
    }

    /// Only chunks whose metadata passes `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// This retriever, further limited to chunks that also pass `filter`: a narrowing can never widen
    /// what the filter already set allows.
    #[must_use]
    pub fn narrowed(&self, filter: Filter) -> Self {
        let mut narrowed = self.clone();
        narrowed.filter = Some(match self.filter.clone() {
            Some(existing) => Filter::and([existing, filter]),
            None => filter,
        });
        narrowed
    }

    /// The chunks for `query`, best first.
    pub async fn retrieve(&self, query: &str) -> Result<Vec<ScoredDocument>, Error> {
        let texts = [query.to_owned()];
        let embedded = self.embedder.embed(&texts).await.map_err(Error::Model)?;
        kai_core::check_embeddings(&embedded.vectors, 1, self.embedder.dimensions()).map_err(Error::Model)?;
        let query_vector = &embedded.vectors[0];
        let fetch = if self.mmr_lambda.is_some() {
            self.k.saturating_mul(4)
        } else {
            self.k
        };
        let found = self.store.search(query_vector, fetch, self.filter.as_ref()).await?;
        // Each candidate with its relevance in [0, 1]: the fused score relative to the best one when
        // hybrid (an exact keyword hit the embeddings rank low keeps the place fusion gave it), the
        // cosine similarity to the query otherwise.
        let mut ranked: Vec<(ScoredDocument, f32)> = match &self.keywords {
            Some(keywords) => self.fuse(query, query_vector, found, keywords, fetch).await?,
            None => found
                .into_iter()
                .map(|d| {
                    let relevance = 1.0 - Metric::Cosine.distance(query_vector, &d.document.embedding);
                    (d, relevance)
                })
                .collect(),
        };
        if let Some(limit) = self.max_distance {
            ranked.retain(|(d, _)| d.distance <= limit);
        }
        Ok(match self.mmr_lambda {
            Some(lambda) => mmr(ranked, self.k, lambda),
            None => ranked.into_iter().take(self.k).map(|(d, _)| d).collect(),
        })
    }
}

impl Retriever {
    async fn fuse(
        &self,
        query: &str,
        query_vector: &[f32],
        vector_hits: Vec<ScoredDocument>,
        keywords: &KeywordIndex,
        fetch: usize,
    ) -> Result<Vec<(ScoredDocument, f32)>, Error> {
        let keyword_ids: Vec<String> = keywords.search(query, fetch).into_iter().map(|(id, _)| id).collect();
        let vector_ids: Vec<String> = vector_hits.iter().map(|d| d.document.id.clone()).collect();
        let mut by_id: std::collections::HashMap<String, ScoredDocument> =
            vector_hits.into_iter().map(|d| (d.document.id.clone(), d)).collect();
        let mut fused = Vec::new();
        let ranking = reciprocal_rank_fusion(&[vector_ids, keyword_ids]);
        let best = ranking.first().map_or(1.0, |(_, score)| *score);
        for (id, score) in ranking {
            let document = match by_id.remove(&id) {
                Some(found) => found,
                None => {
                    let Some(document) = self.store.get(&id).await? else {
                        continue;
                    };
                    if self.filter.as_ref().is_some_and(|f| !f.matches(&document.metadata)) {
                        continue;
                    }
                    let distance = self.store.metric().distance(query_vector, &document.embedding);
                    ScoredDocument { document, distance }
                }
            };
            fused.push((document, score / best));
        }
        Ok(fused)
    }
}

/// Greedy MMR: each pick maximises `lambda * relevance(d) - (1 - lambda) * max sim(d, picked)`, with
/// cosine similarity of the embeddings between documents.
fn mmr(ranked: Vec<(ScoredDocument, f32)>, k: usize, lambda: f32) -> Vec<ScoredDocument> {
    let (mut candidates, relevance): (Vec<ScoredDocument>, Vec<f32>) = ranked.into_iter().unzip();
    let mut picked: Vec<usize> = Vec::with_capacity(k.min(candidates.len()));
    while picked.len() < k.min(candidates.len()) {
        let best = (0..candidates.len())
            .filter(|i| !picked.contains(i))
            .map(|i| {
                let redundancy = picked
                    .iter()
                    .map(|&p| {
                        1.0 - Metric::Cosine
                            .distance(&candidates[i].document.embedding, &candidates[p].document.embedding)
                    })
                    .fold(f32::NEG_INFINITY, f32::max);
                let redundancy = if picked.is_empty() { 0.0 } else { redundancy };
                (i, lambda * relevance[i] - (1.0 - lambda) * redundancy)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _)) => picked.push(i),
            None => break,
        }
    }
    let mut slots: Vec<Option<ScoredDocument>> = candidates.drain(..).map(Some).collect();
    picked.into_iter().filter_map(|i| slots[i].take()).collect()
}
