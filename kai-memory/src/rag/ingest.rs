//! Ingestion: split, embed in batches with bounded concurrency, upsert; idempotent by content hash.

use std::sync::Arc;

use futures::StreamExt as _;
use kai_core::EmbeddingModel;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::rag::keyword::KeywordIndex;
use crate::rag::splitter::{Chunk, Splitter};
use crate::store::{Document, MemoryStore};

/// What one ingestion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestReport {
    /// Chunks the text was split into.
    pub chunks: usize,
    /// Chunks written: new or changed text (embedded), or the same text with new metadata (which keeps
    /// its stored embedding).
    pub written: usize,
    /// Chunks already stored with the same text and metadata, left alone.
    pub unchanged: usize,
    /// Chunks of an earlier, longer version of the source that were removed.
    pub removed: usize,
}

/// Splits sources into chunks, embeds them and stores them.
///
/// Chunk `i` of source `s` is stored as document `s#i` with the metadata given plus `source`, `chunk`,
/// `section` (for Markdown) and `content_hash` (SHA-256 of the text). Re-ingesting a source embeds only
/// chunks whose hash changed, rewrites those whose metadata changed with their stored embedding, and
/// removes chunks beyond its new length, so running it again is cheap and leaves the store as if the
/// source had been ingested once.
pub struct Ingestor {
    keywords: Option<Arc<KeywordIndex>>,
    store: Arc<dyn MemoryStore>,
    embedder: Arc<dyn EmbeddingModel>,
    batch_size: usize,
    concurrency: usize,
}

impl Ingestor {
    /// An ingestor writing to `store` with embeddings from `embedder`; batches of the embedder's
    /// `max_batch_size`, two in flight at a time.
    pub fn new(store: Arc<dyn MemoryStore>, embedder: Arc<dyn EmbeddingModel>) -> Self {
        let batch_size = embedder.max_batch_size().max(1);
        Self {
            keywords: None,
            store,
            embedder,
            batch_size,
            concurrency: 2,
        }
    }

    /// Keeps `keywords` in step with what this ingestor writes and removes, for hybrid retrieval.
    pub fn with_keyword_index(mut self, keywords: Arc<KeywordIndex>) -> Self {
        self.keywords = Some(keywords);
        self
    }

    /// Sets how many embedding requests may be in flight at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets the number of texts per embedding request (at least 1, at most the embedder's maximum).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.clamp(1, self.embedder.max_batch_size().max(1));
        self
    }

    /// Splits `text` with `splitter` and stores the chunks as `source`: the whole pipeline in one call.
    pub async fn ingest_text(
        &self,
        source: &str,
        text: &str,
        splitter: &dyn Splitter,
        metadata: &Map<String, Value>,
    ) -> Result<IngestReport, Error> {
        self.ingest(source, &splitter.split(text), metadata).await
    }

    /// Stores the chunks of `source` (see the type's documentation).
    pub async fn ingest(
        &self,
        source: &str,
        chunks: &[Chunk],
        metadata: &Map<String, Value>,
    ) -> Result<IngestReport, Error> {
        let mut report = IngestReport {
            chunks: chunks.len(),
            ..IngestReport::default()
        };
        let mut pending = Vec::new();
        // Chunks whose text is stored already but whose metadata changed: rewritten with the stored
        // embedding, since the text (and so its embedding) is the same.
        let mut relabelled = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            let id = format!("{source}#{index}");
            let hash = hex_sha256(&chunk.text);
            let mut meta = metadata.clone();
            meta.insert("source".into(), json!(source));
            meta.insert("chunk".into(), json!(index));
            if !chunk.section.is_empty() {
                meta.insert("section".into(), json!(chunk.section));
            }
            meta.insert("content_hash".into(), json!(hash));
            match self.store.get(&id).await? {
                Some(stored) if stored.metadata.get("content_hash").and_then(Value::as_str) == Some(hash.as_str()) => {
                    if stored.metadata == meta {
                        report.unchanged += 1;
                        // A keyword index opened fresh, or not saved since, may lack it.
                        if let Some(keywords) = self.keywords.as_ref().filter(|k| !k.contains(&stored.id)) {
                            keywords.insert(&stored.id, &stored.text);
                        }
                    } else {
                        relabelled.push(Document {
                            metadata: meta,
                            ..stored
                        });
                    }
                }
                _ => pending.push((id, chunk.text.clone(), meta)),
            }
        }

        let embedder = &self.embedder;
        let batches: Vec<Vec<String>> = pending
            .chunks(self.batch_size)
            .map(|b| b.iter().map(|(_, t, _)| t.clone()).collect())
            .collect();
        let embedded: Vec<Result<kai_core::Embeddings, kai_core::Error>> = futures::stream::iter(batches.iter())
            .map(|texts| async move {
                let result = embedder.embed(texts).await;
                if let Ok(embeddings) = &result {
                    kai_core::check_embeddings(&embeddings.vectors, texts.len(), embedder.dimensions())?;
                }
                result
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        let mut vectors = Vec::with_capacity(pending.len());
        for batch in embedded {
            vectors.extend(batch.map_err(Error::Model)?.vectors);
        }
        let documents: Vec<Document> = pending
            .into_iter()
            .zip(vectors)
            .map(|((id, text, metadata), embedding)| Document {
                id,
                text,
                metadata,
                embedding,
            })
            .chain(relabelled)
            .collect();
        report.written = documents.len();
        if !documents.is_empty() {
            self.store.upsert(&documents).await?;
            if let Some(keywords) = &self.keywords {
                for document in &documents {
                    keywords.insert(&document.id, &document.text);
                }
            }
        }
        // Chunks are numbered from 0 without gaps: remove those past the new end until one is missing.
        let mut index = chunks.len();
        loop {
            let id = format!("{source}#{index}");
            if self.store.delete(std::slice::from_ref(&id)).await? != 1 {
                break;
            }
            if let Some(keywords) = &self.keywords {
                keywords.remove(&id);
            }
            report.removed += 1;
            index += 1;
        }
        Ok(report)
    }
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
