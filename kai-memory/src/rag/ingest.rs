//! Ingestion: split, embed in batches with bounded concurrency, upsert; idempotent by content hash.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt as _;
use kai_core::EmbeddingModel;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::rag::keyword::KeywordIndex;
use crate::rag::splitter::{Chunk, Splitter};
use crate::store::{Document, MemoryStore};

/// The metadata key on chunk 0 that records how many chunks the source has (reserved, like `source`,
/// `chunk`, `section` and `content_hash`).
pub const CHUNK_COUNT: &str = "kai_chunk_count";

/// What one ingestion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestReport {
    /// Chunks the text was split into.
    pub chunks: usize,
    /// Chunks written: new or changed text, or the same text with new metadata (which keeps its stored
    /// embedding).
    pub written: usize,
    /// Chunks whose text was sent to the embedder: text no chunk of the source held before. Text that
    /// moved (a paragraph inserted above it shifts every chunk after) keeps its stored embedding.
    #[serde(default)]
    pub embedded: usize,
    /// Chunks already stored with the same text and metadata, left alone.
    pub unchanged: usize,
    /// Chunks of an earlier, longer version of the source that were removed.
    pub removed: usize,
}

/// `metadata` as a JSON object (null as an empty one).
fn metadata_object(source: &str, metadata: &(impl Serialize + ?Sized)) -> Result<Map<String, Value>, Error> {
    let refused = |message: String| Error::Record {
        name: format!("metadata of {source}"),
        message,
    };
    match serde_json::to_value(metadata) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(refused("metadata must be a JSON object".into())),
        Err(e) => Err(refused(e.to_string())),
    }
}

/// Splits sources into chunks, embeds them and stores them.
///
/// Chunk `i` of source `s` is stored as document `s#i` with the metadata given plus `source`, `chunk`,
/// `section` (for Markdown) and `content_hash` (SHA-256 of the text); chunk 0 also records how many
/// chunks there are ([`CHUNK_COUNT`]). Re-ingesting a source embeds only text the source did not hold before
/// (a chunk that moved keeps its embedding), rewrites chunks whose metadata changed with their stored
/// embedding, and removes chunks beyond its new length, so running it again is cheap and leaves the
/// store as if the source had been ingested once. The chunks beyond the new length are removed before
/// the new ones are written, last first, so a crash part-way leaves chunk 0's count naming those still
/// to remove, and the next ingestion removes them.
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
        metadata: &(impl Serialize + Sync + ?Sized),
    ) -> Result<IngestReport, Error> {
        self.ingest(source, &splitter.split(text), metadata).await
    }

    /// Stores the chunks of `source` (see the type's documentation). `metadata` is anything that
    /// serializes to a JSON object (a `json!({...})` value, a `serde_json::Map`, a struct with named
    /// fields) or to null for none; anything else is an [`Error::Record`] and stores nothing.
    pub async fn ingest(
        &self,
        source: &str,
        chunks: &[Chunk],
        metadata: &(impl Serialize + Sync + ?Sized),
    ) -> Result<IngestReport, Error> {
        let metadata = metadata_object(source, metadata)?;
        let mut report = IngestReport {
            chunks: chunks.len(),
            ..IngestReport::default()
        };
        let id_of = |index: usize| format!("{source}#{index}");
        // What the source holds now: as many chunks as chunk 0 records (a source stored before it did:
        // those up to the first missing past the new length), and their embeddings by content hash.
        let recorded = self
            .store
            .get(&id_of(0))
            .await?
            .and_then(|first| first.metadata.get(CHUNK_COUNT).and_then(Value::as_u64))
            .and_then(|count| usize::try_from(count).ok());
        let mut stored_chunks = Vec::new();
        for index in 0..recorded.unwrap_or(0).max(chunks.len()) {
            stored_chunks.push(self.store.get(&id_of(index)).await?);
        }
        if recorded.is_none() {
            while let Some(stored) = self.store.get(&id_of(stored_chunks.len())).await? {
                stored_chunks.push(Some(stored));
            }
        }
        let old_end = stored_chunks.len();
        let embeddings: HashMap<&str, &Vec<f32>> = stored_chunks
            .iter()
            .flatten()
            .filter_map(|stored| {
                let hash = stored.metadata.get("content_hash").and_then(Value::as_str)?;
                Some((hash, &stored.embedding))
            })
            .collect();
        let mut pending = Vec::new();
        // Chunks whose text is stored already (here or at another position) but whose metadata or
        // position changed: rewritten with the stored embedding, since the text is the same.
        let mut relabelled = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            let id = id_of(index);
            let hash = hex_sha256(&chunk.text);
            let mut meta = metadata.clone();
            meta.insert("source".into(), json!(source));
            meta.insert("chunk".into(), json!(index));
            if index == 0 {
                meta.insert(CHUNK_COUNT.into(), json!(chunks.len()));
            }
            if !chunk.section.is_empty() {
                meta.insert("section".into(), json!(chunk.section));
            }
            meta.insert("content_hash".into(), json!(hash));
            let stored = stored_chunks.get(index).cloned().flatten();
            match stored {
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
                _ => match embeddings.get(hash.as_str()) {
                    Some(&embedding) => relabelled.push(Document {
                        id,
                        text: chunk.text.clone(),
                        metadata: meta,
                        embedding: embedding.clone(),
                    }),
                    None => pending.push((id, chunk.text.clone(), meta)),
                },
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
        let vectors_embedded = pending.len();
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
        report.embedded = vectors_embedded;
        // The chunks past the new end, last first, once the embedder has answered and before the new
        // chunks are written (see the type's documentation).
        for index in (chunks.len()..old_end).rev() {
            report.removed += self.remove_chunk(&id_of(index)).await?;
        }
        if !documents.is_empty() {
            self.store.upsert(&documents).await?;
            if let Some(keywords) = &self.keywords {
                for document in &documents {
                    keywords.insert(&document.id, &document.text);
                }
            }
        }
        Ok(report)
    }

    /// Removes one chunk from the store and the keyword index; 1 if it was there.
    async fn remove_chunk(&self, id: &str) -> Result<usize, Error> {
        let removed = self.store.delete(&[id.to_owned()]).await?;
        if let Some(keywords) = &self.keywords {
            keywords.remove(id);
        }
        Ok(removed)
    }
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
