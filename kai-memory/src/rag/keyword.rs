//! A BM25 keyword index, for hybrid retrieval beside vector search.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation as _;

use crate::error::Error;
use kai_core::fs::write_atomic;

/// BM25 (Robertson & Zaragoza; k1 = 1.2, b = 0.75) over lower-cased words, as Unicode's word
/// boundaries (UAX #29) find them: single letters and digits count, and text without spaces (Chinese,
/// Japanese) is split into its characters rather than taken as one word. Thread-safe; shared between an
/// [`Ingestor`](crate::rag::Ingestor), which keeps it in step with the store, and a
/// [`Retriever`](crate::rag::Retriever), which fuses its ranking with the vector ranking.
///
/// The index is inverted (each term lists the documents holding it), so a search costs the postings of
/// the query's terms, not a pass over every document.
#[derive(Debug, Default)]
pub struct KeywordIndex {
    inner: RwLock<Postings>,
}

#[derive(Debug, Default)]
struct Postings {
    /// For each term, its frequency in each document holding it.
    terms: HashMap<String, HashMap<Arc<str>, u32>>,
    /// Each document's distinct terms and length in words.
    documents: HashMap<Arc<str>, (Vec<String>, u32)>,
    total_length: u64,
}

/// The saved form: term frequencies per document (a document's terms, not the inverted lists, which
/// are rebuilt on opening).
#[derive(Serialize, Deserialize)]
struct Saved {
    /// How the terms were found: 2 for Unicode word boundaries; absent in files of earlier releases,
    /// which split at anything not alphanumeric and dropped one-character words.
    #[serde(default)]
    tokenizer: Option<u32>,
    documents: HashMap<String, HashMap<String, u32>>,
}

/// The tokenizer this release writes.
const TOKENIZER: u32 = 2;

const K1: f32 = 1.2;
const B: f32 = 0.75;

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.unicode_words().map(str::to_lowercase)
}

impl KeywordIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a document's text.
    pub fn insert(&self, id: &str, text: &str) {
        let mut frequencies: HashMap<String, u32> = HashMap::new();
        for word in words(text) {
            *frequencies.entry(word).or_default() += 1;
        }
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, frequencies);
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
        let average = (postings.total_length as f32 / n).max(1.0);
        let mut terms: Vec<String> = words(query).collect();
        terms.sort_unstable();
        terms.dedup();
        let mut scores: HashMap<&Arc<str>, f32> = HashMap::new();
        for term in &terms {
            let Some(holders) = postings.terms.get(term) else {
                continue;
            };
            let df = holders.len() as f32;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for (id, &tf) in holders {
                let length = postings.documents.get(id).map_or(0, |(_, length)| *length) as f32;
                let tf = tf as f32;
                *scores.entry(id).or_default() += idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / average));
            }
        }
        let mut ranked: Vec<(String, f32)> = scores
            .into_iter()
            .filter(|(_, score)| *score > 0.0)
            .map(|(id, score)| (id.to_string(), score))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }

    /// Writes the index to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let saved = self.inner.read().unwrap_or_else(PoisonError::into_inner).saved();
        let json = serde_json::to_vec(&saved).map_err(|e| Error::Corrupt { what: e.to_string() })?;
        write_atomic(path.as_ref(), &json).map_err(|e| Error::file(path.as_ref(), e))
    }

    /// Reads an index written by [`save`](Self::save) (by this release or an earlier one).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|_| Error::Corrupt {
            what: "the keyword index does not parse".into(),
        })?;
        if saved.tokenizer != Some(TOKENIZER) {
            tracing::warn!(
                path = %path.display(),
                "the keyword index was written with another tokenizer: re-ingest its sources for searches \
                 to match one-letter and unspaced terms"
            );
        }
        let mut postings = Postings::default();
        for (id, frequencies) in saved.documents {
            postings.insert(&id, frequencies);
        }
        Ok(Self {
            inner: RwLock::new(postings),
        })
    }
}

impl Postings {
    fn insert(&mut self, id: &str, frequencies: HashMap<String, u32>) {
        self.remove(id);
        let id: Arc<str> = Arc::from(id);
        let length = frequencies.values().fold(0u32, |sum, &tf| sum.saturating_add(tf));
        let mut distinct = Vec::with_capacity(frequencies.len());
        for (term, tf) in frequencies {
            self.terms.entry(term.clone()).or_default().insert(Arc::clone(&id), tf);
            distinct.push(term);
        }
        self.total_length += u64::from(length);
        self.documents.insert(id, (distinct, length));
    }

    fn remove(&mut self, id: &str) {
        let Some((distinct, length)) = self.documents.remove(id) else {
            return;
        };
        for term in distinct {
            if let Some(holders) = self.terms.get_mut(&term) {
                holders.remove(id);
                if holders.is_empty() {
                    self.terms.remove(&term);
                }
            }
        }
        self.total_length = self.total_length.saturating_sub(u64::from(length));
    }

    fn saved(&self) -> Saved {
        let mut documents: HashMap<String, HashMap<String, u32>> = self
            .documents
            .keys()
            .map(|id| (id.to_string(), HashMap::new()))
            .collect();
        for (term, holders) in &self.terms {
            for (id, &tf) in holders {
                if let Some(frequencies) = documents.get_mut(&**id) {
                    frequencies.insert(term.clone(), tf);
                }
            }
        }
        Saved {
            tokenizer: Some(TOKENIZER),
            documents,
        }
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

    /// One-letter terms count (a product named "X", a grade "A"), and text without spaces is split into
    /// its characters instead of being one long term that no query matches.
    #[test]
    fn short_terms_and_unspaced_scripts_are_searchable() {
        let index = KeywordIndex::new();
        index.insert("grade", "the grade was A in section 4");
        index.insert("other", "the grade was B in section 5");
        index.insert("zh", "数据库连接失败");
        index.insert("ja", "東京の天気は晴れです");
        assert_eq!(index.search("a", 10)[0].0, "grade");
        assert_eq!(index.search("4", 10)[0].0, "grade");
        assert_eq!(index.search("连接", 10)[0].0, "zh");
        assert_eq!(index.search("天気", 10)[0].0, "ja");
    }

    /// A saved index reopens with the same rankings; an index saved by an earlier release (which also
    /// kept document frequencies) opens too.
    #[test]
    fn saved_indexes_reopen_with_the_same_rankings() {
        let dir = tempfile::tempdir().unwrap();
        let index = KeywordIndex::new();
        index.insert("a", "the quick brown fox");
        index.insert("b", "the fox and the dog");
        index.save(dir.path().join("k.json")).unwrap();
        let reopened = KeywordIndex::open(dir.path().join("k.json")).unwrap();
        assert_eq!(reopened.search("fox dog", 5), index.search("fox dog", 5));
        let earlier = r#"{"documents":{"a":{"quick":1,"fox":1}},"lengths":{"a":2},"document_frequency":{"quick":1,"fox":1},"total_length":2}"#;
        std::fs::write(dir.path().join("old.json"), earlier).unwrap();
        let old = KeywordIndex::open(dir.path().join("old.json")).unwrap();
        assert_eq!(old.search("fox", 5)[0].0, "a");
    }

    #[test]
    fn fusion_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[vec!["x".into(), "y".into(), "z".into()], vec!["y".into(), "w".into()]]);
        assert_eq!(fused[0].0, "y");
    }
}
