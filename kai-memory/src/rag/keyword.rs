//! A BM25 keyword index, for hybrid retrieval beside vector search.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use kai_core::fs::write_atomic;

/// BM25 (Robertson & Zaragoza; k1 = 1.2, b = 0.75) over lower-cased alphanumeric words. Thread-safe;
/// shared between an [`Ingestor`](crate::rag::Ingestor), which keeps it in step with the store, and a
/// [`Retriever`](crate::rag::Retriever), which fuses its ranking with the vector ranking.
#[derive(Debug, Default)]
pub struct KeywordIndex {
    inner: RwLock<Postings>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Postings {
    /// Term frequencies per document.
    documents: HashMap<String, HashMap<String, u32>>,
    /// Document lengths in words.
    lengths: HashMap<String, u32>,
    /// Documents containing each term.
    document_frequency: HashMap<String, u32>,
    total_length: u64,
}

const K1: f32 = 1.2;
const B: f32 = 0.75;

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
}

impl KeywordIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a document's text.
    pub fn insert(&self, id: &str, text: &str) {
        let mut postings = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        postings.remove(id);
        let mut frequencies: HashMap<String, u32> = HashMap::new();
        let mut length = 0;
        for word in words(text) {
            *frequencies.entry(word).or_default() += 1;
            length += 1;
        }
        for term in frequencies.keys() {
            *postings.document_frequency.entry(term.clone()).or_default() += 1;
        }
        postings.total_length += u64::from(length);
        postings.lengths.insert(id.to_owned(), length);
        postings.documents.insert(id.to_owned(), frequencies);
    }

    /// Whether a document with this id is indexed.
    pub fn contains(&self, id: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .documents
            .contains_key(id)
    }

    /// Removes a document.
    pub fn remove(&self, id: &str) {
        self.inner.write().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    /// The `k` best-scoring documents for `query`, best first.
    pub fn search(&self, query: &str, k: usize) -> Vec<(String, f32)> {
        let postings = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let n = postings.documents.len() as f32;
        if n == 0.0 {
            return Vec::new();
        }
        let average = postings.total_length as f32 / n;
        let terms: Vec<String> = words(query).collect();
        let mut scores: Vec<(String, f32)> = postings
            .documents
            .iter()
            .filter_map(|(id, frequencies)| {
                let length = postings.lengths.get(id).copied().unwrap_or(0) as f32;
                let score: f32 = terms
                    .iter()
                    .filter_map(|term| {
                        let tf = *frequencies.get(term)? as f32;
                        let df = postings.document_frequency.get(term).copied().unwrap_or(0) as f32;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        Some(idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / average.max(1.0))))
                    })
                    .sum();
                (score > 0.0).then(|| (id.clone(), score))
            })
            .collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        scores.truncate(k);
        scores
    }

    /// Writes the index to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let postings = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let json = serde_json::to_vec(&*postings).map_err(|e| Error::Corrupt { what: e.to_string() })?;
        write_atomic(path.as_ref(), &json).map_err(|e| Error::file(path.as_ref(), e))
    }

    /// Reads an index written by [`save`](Self::save).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let postings = serde_json::from_slice(&bytes).map_err(|_| Error::Corrupt {
            what: "the keyword index does not parse".into(),
        })?;
        Ok(Self {
            inner: RwLock::new(postings),
        })
    }
}

impl Postings {
    fn remove(&mut self, id: &str) {
        let Some(frequencies) = self.documents.remove(id) else {
            return;
        };
        for term in frequencies.keys() {
            if let Some(df) = self.document_frequency.get_mut(term) {
                // Saturating: counts read from a damaged file may be lower than the documents.
                *df = df.saturating_sub(1);
                if *df == 0 {
                    self.document_frequency.remove(term);
                }
            }
        }
        let length = self.lengths.remove(id).unwrap_or(0);
        self.total_length = self.total_length.saturating_sub(u64::from(length));
    }
}

/// Reciprocal rank fusion (Cormack et al., k = 60): each list contributes `1 / (60 + rank)` per id.
pub(crate) fn reciprocal_rank_fusion(rankings: &[Vec<String>]) -> Vec<(String, f32)> {
    let mut scores: HashMap<&str, f32> = HashMap::new();
    for ranking in rankings {
        for (rank, id) in ranking.iter().enumerate() {
            *scores.entry(id.as_str()).or_default() += 1.0 / (60.0 + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(String, f32)> = scores.into_iter().map(|(id, s)| (id.to_owned(), s)).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_matching_terms_rank_first_and_removal_forgets() {
        let index = KeywordIndex::new();
        index.insert("a", "the quick brown fox");
        index.insert("b", "the lazy dog sleeps");
        index.insert("c", "the fox and the dog");
        let hits = index.search("fox", 10);
        assert_eq!(hits.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert!(
            index.search("the", 10).iter().all(|h| h.1 < hits[0].1),
            "common words weigh little"
        );
        index.remove("a");
        assert_eq!(index.search("quick", 10), Vec::<(String, f32)>::new());
        index.insert("c", "replaced text");
        assert!(index.search("fox", 10).is_empty());
    }

    #[test]
    fn fusion_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[vec!["x".into(), "y".into(), "z".into()], vec!["y".into(), "w".into()]]);
        assert_eq!(fused[0].0, "y");
    }
}
