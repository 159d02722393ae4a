//! Retrieval-augmented generation end to end: a store, ingestion of two documents, retrieval, and an
//! agent that answers with the retrieval tool.
//!
//! Everything runs locally and offline: the embedded store (SQLite + HNSW) in a temporary directory,
//! the hashing embedder from `kai_core::testing` (swap in a real one: `kai_providers`' OpenAI,
//! Ollama or llama.cpp embedders implement the same `EmbeddingModel`), and a scripted model that calls
//! the tool the way a real one would.
//!
//! Run: `cargo run -p kai-examples --example rag`

use std::sync::Arc;

use kai_core::Agent;
use kai_core::testing::{HashEmbedder, ScriptedModel};
use kai_memory::rag::{Ingestor, MarkdownSplitter, RetrievalTool, Retriever};
use kai_memory::store::{EmbeddedStore, Metric, StoreConfig};
use serde_json::json;

const HANDBOOK: &str = "# Office\nThe office opens at 8:30 and closes at 18:00.\n\n\
# Wifi\nThe guest wifi is called kai-guest; its password is printed under the router.\n\n\
# Lunch\nLunch is served at noon on the third floor.";

const TRAVEL: &str = "# Travel\nBook trains through the travel desk at least two days ahead.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let embedder = Arc::new(HashEmbedder::new(256));
    let store = Arc::new(EmbeddedStore::open(
        directory.path().join("store"),
        StoreConfig::new(Metric::Cosine, 256),
    )?);

    // Ingest: split, embed, store. Running it again embeds nothing new.
    let ingestor = Ingestor::new(store.clone(), embedder.clone());
    let splitter = MarkdownSplitter::new(200, 0);
    for (source, text, team) in [("handbook.md", HANDBOOK, "office"), ("travel.md", TRAVEL, "travel")] {
        let metadata = json!({"team": team}).as_object().cloned().unwrap_or_default();
        let report = ingestor.ingest_text(source, text, &splitter, &metadata).await?;
        println!(
            "ingested {source}: {} chunks, {} embedded",
            report.chunks, report.embedded
        );
    }

    // Retrieve directly.
    let retriever = Retriever::new(store.clone(), embedder.clone()).top_k(2);
    let found = retriever.retrieve("wifi password router").await?;
    println!("nearest chunk: {:?}", found[0].document.text);

    // Retrieve as a tool, which the model may narrow by team.
    let tool =
        RetrievalTool::new(retriever, "search_handbook", "Searches the company handbook.").narrowable_by(["team"]);
    let model = ScriptedModel::new()
        .tool_call(
            "search_handbook",
            json!({"query": "wifi password router", "only": {"team": "office"}}),
        )
        .text("The guest wifi password is printed under the router.");
    let agent = Agent::builder(model.clone()).tool(tool).build()?;
    let output = agent.run("Where do I find the wifi password?").await?;
    let tool_result = &model.requests()[1].messages;
    let sources = tool_result
        .iter()
        .flat_map(|message| message.tool_results())
        .map(|result| result.content.clone())
        .collect::<Vec<_>>();
    assert!(
        sources.iter().any(|content| content.contains("handbook.md")),
        "{sources:?}"
    );
    println!("answer: {}", output.answer);
    // Closing saves the index; the agent and the ingestor share the store until they go.
    drop((agent, ingestor));
    Arc::try_unwrap(store)
        .map_err(|_| "the store is still shared")?
        .close()?;
    Ok(())
}
