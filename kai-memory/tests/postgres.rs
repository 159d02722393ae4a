//! The PostgreSQL + pgvector store against a real server (pgserver from PyPI, started by
//! `scripts/setup/postgres.sh`, or `KAI_PG_URL`).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;
use std::sync::OnceLock;

use kai_memory::Error;
use kai_memory::index::Metric;
use kai_memory::store::{Document, Filter, MemoryStore, PgStore};
use serde_json::json;

fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("KAI_PG_URL") {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/setup/postgres.sh");
        let output = Command::new("bash").arg(script).arg("start").output().unwrap();
        assert!(
            output.status.success(),
            "postgres did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
}

async fn store(name: &str, metric: Metric) -> PgStore {
    let table = format!("kai_test_{name}_{}", std::process::id());
    PgStore::connect(url(), &table, metric, 3, 4).await.unwrap()
}

fn doc(i: usize, lang: &str, year: serde_json::Value) -> Document {
    let angle = i as f32 * 0.01;
    Document {
        id: format!("doc-{i}"),
        text: format!("document {i}"),
        metadata: json!({"lang": lang, "year": year}).as_object().unwrap().clone(),
        embedding: vec![angle.cos(), angle.sin(), 0.25],
    }
}

#[tokio::test]
async fn documents_round_trip_and_search_with_sql_filters() {
    let store = store("basic", Metric::Cosine).await;
    let docs: Vec<Document> = (0..500)
        .map(|i| {
            let lang = if i % 50 == 7 { "de" } else { "en" };
            let year = if i % 10 == 0 {
                json!("unknown")
            } else {
                json!(2000 + i % 30)
            };
            doc(i, lang, year)
        })
        .collect();
    store.upsert(&docs).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 500);
    assert_eq!(store.get("doc-42").await.unwrap().unwrap(), docs[42]);

    let hits = store.search(&docs[200].embedding, 3, None).await.unwrap();
    assert_eq!(hits[0].document.id, "doc-200");
    assert!(hits[0].distance.abs() < 1e-4);

    // Selective: 10 of 500 rows are German; all 5 nearest of them are found.
    let german = Filter::eq("lang", json!("de"));
    let hits = store.search(&docs[200].embedding, 5, Some(&german)).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.document.metadata["lang"] == "de"));
    assert_eq!(hits[0].document.id, "doc-207");

    // Numbers compare as numbers; rows holding a string there are skipped, not an SQL error.
    let recent = Filter::and([
        Filter::gt("year", 2025.0),
        Filter::In {
            key: "lang".into(),
            values: vec![json!("en"), json!("fr")],
        },
    ]);
    let hits = store.search(&docs[0].embedding, 20, Some(&recent)).await.unwrap();
    assert_eq!(hits.len(), 20);
    assert!(
        hits.iter()
            .all(|h| h.document.metadata["year"].as_f64().unwrap() > 2025.0)
    );
    let no_year = Filter::Not {
        filter: Box::new(Filter::Exists { key: "year".into() }),
    };
    assert!(
        store
            .search(&docs[0].embedding, 5, Some(&no_year))
            .await
            .unwrap()
            .is_empty()
    );

    let mut changed = doc(3, "fr", json!(1999));
    changed.text = "replaced".into();
    store.upsert(std::slice::from_ref(&changed)).await.unwrap();
    assert_eq!(store.get("doc-3").await.unwrap().unwrap().text, "replaced");
    assert_eq!(store.delete(&["doc-3".into(), "missing".into()]).await.unwrap(), 1);
    assert_eq!(store.count().await.unwrap(), 499);
}

#[tokio::test]
async fn bad_input_is_rejected_before_the_database() {
    let store = store("bad", Metric::L2).await;
    let mut bad = doc(1, "en", json!(1));
    bad.embedding = vec![f32::NAN, 0.0, 0.0];
    assert!(matches!(
        store.upsert(&[doc(0, "en", json!(1)), bad]).await,
        Err(Error::InvalidVector { .. })
    ));
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(matches!(
        store.search(&[1.0, 2.0], 3, None).await,
        Err(Error::DimensionMismatch { .. })
    ));
    let injected = PgStore::connect(url(), "docs; DROP TABLE x", Metric::L2, 3, 1).await;
    assert!(matches!(injected, Err(Error::InvalidConfig(_))));
}

#[tokio::test]
async fn the_pool_serves_concurrent_writers_and_readers() {
    let store = std::sync::Arc::new(store("pool", Metric::L2).await);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let n = worker * 100 + i;
                store.upsert(&[doc(n, "en", json!(n))]).await.unwrap();
                store.search(&[1.0, 0.0, 0.25], 3, None).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 200);
}
