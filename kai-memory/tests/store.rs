//! The embedded store: documents, filters, replacement, reopening, stale indexes, and writes that
//! survive `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

mod common;

use futures::executor::block_on;
use kai_memory::Error;
use kai_memory::index::Metric;
use kai_memory::store::{Document, EmbeddedStore, Filter, MemoryStore, StoreConfig};
use serde_json::json;

/// A path for a store, not yet created, in a fresh directory removed with its contents when the
/// guard drops.
fn directory() -> (tempfile::TempDir, PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("store");
    (scratch, dir)
}

fn doc(id: usize, lang: &str) -> Document {
    let angle = id as f32 * 0.01;
    Document {
        id: format!("doc-{id}"),
        text: format!("document number {id}"),
        metadata: json!({"lang": lang, "n": id}).as_object().unwrap().clone(),
        embedding: vec![angle.cos(), angle.sin(), 0.5],
    }
}

fn config() -> StoreConfig {
    StoreConfig::new(Metric::Cosine, 3)
}

#[test]
fn documents_round_trip_and_search_with_filters() {
    let (_scratch, dir) = directory();
    let store = EmbeddedStore::open(&dir, config()).unwrap();
    let docs: Vec<Document> = (0..300).map(|i| doc(i, if i % 3 == 0 { "de" } else { "en" })).collect();
    block_on(store.upsert(&docs)).unwrap();
    assert_eq!(block_on(store.count()).unwrap(), 300);
    assert_eq!(block_on(store.get("doc-42")).unwrap().unwrap(), docs[42]);
    assert!(block_on(store.get("missing")).unwrap().is_none());

    let hits = block_on(store.search(&docs[100].embedding, 3, None)).unwrap();
    assert_eq!(hits[0].document.id, "doc-100");
    let german = Filter::eq("lang", json!("de"));
    let hits = block_on(store.search(&docs[100].embedding, 5, Some(&german))).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.document.metadata["lang"] == "de"));
    assert_eq!(hits[0].document.id, "doc-99");

    // Replacing keeps one document per id.
    let mut changed = doc(100, "fr");
    changed.text = "replaced".into();
    block_on(store.upsert(std::slice::from_ref(&changed))).unwrap();
    assert_eq!(block_on(store.count()).unwrap(), 300);
    assert_eq!(block_on(store.get("doc-100")).unwrap().unwrap().text, "replaced");

    assert_eq!(block_on(store.delete(&["doc-100".into(), "nope".into()])).unwrap(), 1);
    let hits = block_on(store.search(&docs[100].embedding, 3, None)).unwrap();
    assert!(hits.iter().all(|h| h.document.id != "doc-100"));
}

#[test]
fn a_bad_vector_rejects_the_whole_batch() {
    let (_scratch, dir) = directory();
    let store = EmbeddedStore::open(&dir, config()).unwrap();
    let mut bad = doc(2, "en");
    bad.embedding = vec![f32::NAN, 0.0, 0.0];
    let result = block_on(store.upsert(&[doc(1, "en"), bad]));
    assert!(matches!(result, Err(Error::InvalidVector { .. })));
    assert_eq!(block_on(store.count()).unwrap(), 0);
    let mut short = doc(3, "en");
    short.embedding.pop();
    assert!(matches!(
        block_on(store.upsert(&[short])),
        Err(Error::DimensionMismatch { .. })
    ));
}

#[test]
fn reopening_uses_the_saved_index_and_catches_up_on_writes_a_crash_left_out_of_it() {
    let (_scratch, dir) = directory();
    let docs: Vec<Document> = (0..200).map(|i| doc(i, "en")).collect();
    let store = EmbeddedStore::open(&dir, config()).unwrap();
    block_on(store.upsert(&docs[..150])).unwrap();
    store.close().unwrap();
    assert!(dir.join("index.kai").exists());
    {
        let store = EmbeddedStore::open(&dir, config()).unwrap();
        assert_eq!(block_on(store.count()).unwrap(), 150);
        block_on(store.upsert(&docs[150..])).unwrap();
        // After the last save: one document moves to a new embedding, another is deleted.
        let moved = Document {
            embedding: doc(400, "en").embedding,
            ..docs[5].clone()
        };
        block_on(store.upsert(&[moved])).unwrap();
        assert_eq!(block_on(store.delete(&["doc-7".into()])).unwrap(), 1);
        // Dropped without a close, as in a crash: the index is not saved.
    }
    assert_eq!(std::fs::read_to_string(dir.join("index.generation")).unwrap(), "1");
    let store = EmbeddedStore::open(&dir, config()).unwrap();
    assert_eq!(block_on(store.count()).unwrap(), 199);
    let nearest = |embedding: &[f32]| {
        block_on(store.search(embedding, 1, None)).unwrap()[0]
            .document
            .id
            .clone()
    };
    for doc in docs.iter().filter(|d| d.id != "doc-5" && d.id != "doc-7") {
        assert_eq!(nearest(&doc.embedding), doc.id);
    }
    assert_eq!(nearest(&doc(400, "en").embedding), "doc-5");
    let around_seven = block_on(store.search(&docs[7].embedding, 5, None)).unwrap();
    assert!(
        around_seven
            .iter()
            .all(|hit| hit.document.id != "doc-7" && hit.document.id != "doc-5")
    );

    drop(store);
    let other = EmbeddedStore::open(&dir, StoreConfig::new(Metric::L2, 3));
    assert!(matches!(other, Err(Error::InvalidConfig(_))));
}

/// Two stores on one directory would write the same generations, and a later open could take a stale
/// index for a current one: the second open is refused while the first holds the directory, in this
/// process as in another.
#[test]
fn one_store_at_a_time_has_a_directory() {
    let (_scratch, dir) = directory();
    let first = EmbeddedStore::open(&dir, config()).unwrap();
    block_on(first.upsert(&[doc(1, "en")])).unwrap();
    assert!(matches!(EmbeddedStore::open(&dir, config()), Err(Error::Locked { .. })));
    first.close().unwrap();
    let second = EmbeddedStore::open(&dir, config()).unwrap();
    assert_eq!(block_on(second.count()).unwrap(), 1);
    drop(second);
    // A drop releases the directory too.
    EmbeddedStore::open(&dir, config()).unwrap();
}

/// Child half of `acknowledged_writes_survive_kill_9`: writes documents one by one, printing each
/// number after its write returned, until it is killed.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var("KAI_STORE_CHILD_DIR") else {
        return;
    };
    let store = EmbeddedStore::open(&dir, config()).unwrap();
    for i in 0.. {
        block_on(store.upsert(&[doc(i, "en")])).unwrap();
        println!("ack {i}");
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let (_scratch, dir) = directory();
    std::fs::create_dir_all(&dir).unwrap();
    let last = common::kill_during_writes("writer_child", "KAI_STORE_CHILD_DIR", &dir, 150, Duration::ZERO);
    let store = EmbeddedStore::open(&dir, config()).unwrap();
    for i in 0..=last {
        assert!(
            block_on(store.get(&format!("doc-{i}"))).unwrap().is_some(),
            "write {i} was acknowledged"
        );
    }
    let count = block_on(store.count()).unwrap();
    assert!(count > last, "{count} documents, {last} acknowledged");
}

#[test]
fn calls_do_not_block_the_executor_they_are_awaited_on() {
    let (_scratch, dir) = directory();
    let store = EmbeddedStore::open(&dir, config()).unwrap();
    let docs: Vec<Document> = (0..4_000).map(|i| doc(i, "en")).collect();
    assert!(
        common::leaves_the_executor_free(async { store.upsert(&docs).await.unwrap() }),
        "the upsert ran on the awaiting thread"
    );
    assert_eq!(block_on(store.count()).unwrap(), 4_000);
}

/// The embedded store a configuration describes: opened, written, closed, and reopened with its
/// documents.
#[cfg(feature = "config")]
#[test]
fn a_store_opens_from_configuration() {
    use kai_core::config::{ConfigFormat, KaiConfig};
    use kai_memory::store::{ConfiguredStore, store_from_config};

    let (_scratch, dir) = directory();
    let yaml = format!(
        "memory:\n  store: embedded\n  path: {}\n  dimensions: 3\n",
        dir.display()
    );
    let config = KaiConfig::parse(&yaml, ConfigFormat::Yaml, []).unwrap();
    let memory = config.memory.unwrap();
    let opened = block_on(store_from_config(&memory)).unwrap();
    assert!(matches!(opened, ConfiguredStore::Embedded(_)));
    let docs: Vec<Document> = (0..20).map(|i| doc(i, "en")).collect();
    block_on(opened.store().upsert(&docs)).unwrap();
    assert_eq!(opened.store().metric(), Metric::Cosine);
    opened.close().unwrap();
    let reopened = block_on(store_from_config(&memory)).unwrap();
    assert_eq!(block_on(reopened.store().count()).unwrap(), 20);
    let hits = block_on(reopened.store().search(&docs[7].embedding, 1, None)).unwrap();
    assert_eq!(hits[0].document.id, "doc-7");
}
