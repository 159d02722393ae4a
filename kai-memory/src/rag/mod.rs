//! Retrieval-augmented generation: splitting, ingestion, retrieval, and their use by agents.

mod agent;
mod ingest;
mod keyword;
mod retriever;
mod splitter;

pub use agent::{RetrievalHook, RetrievalTool};
pub use ingest::{CHUNK_COUNT, IngestReport, Ingestor};
pub use keyword::KeywordIndex;
pub use retriever::Retriever;
pub use splitter::{Chunk, MarkdownSplitter, RecursiveSplitter, Splitter};
