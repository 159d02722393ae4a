//! The parts of kai-memory that run in a browser or Node, as wasm32 (run under Node by
//! `scripts/wasm-test.sh`): `FlatIndex`, the fallback for `HnswIndex` there, against brute force under
//! every metric; filters; splitters; the keyword index.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kai_memory::Error;
use kai_memory::index::{FlatIndex, Metric};
use kai_memory::rag::{KeywordIndex, MarkdownSplitter, RecursiveSplitter};
use kai_memory::store::Filter;
use serde_json::json;
use wasm_bindgen_test::wasm_bindgen_test;

/// 300 deterministic 16-d vectors.
fn vectors() -> Vec<Vec<f32>> {
    (0..300)
        .map(|i| (0..16).map(|d| ((i * 31 + d * 17) % 97) as f32 / 97.0 - 0.4).collect())
        .collect()
}

#[wasm_bindgen_test]
fn flat_index_finds_what_brute_force_finds_under_every_metric() {
    let vectors = vectors();
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let mut index = FlatIndex::new(metric, 16).unwrap();
        for (id, vector) in vectors.iter().enumerate() {
            index.insert(id as u64, vector).unwrap();
        }
        for query in vectors.iter().step_by(37) {
            let mut expected: Vec<(f32, u64)> = vectors
                .iter()
                .enumerate()
                .map(|(id, v)| (metric.distance(query, v), id as u64))
                .collect();
            expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let hits = index.search(query, 5).unwrap();
            for (hit, (distance, _)) in hits.iter().zip(&expected) {
                assert!(
                    (hit.distance - distance).abs() < 1e-4,
                    "{metric:?}: {} vs {distance}",
                    hit.distance
                );
            }
        }
        assert!(index.remove(7));
        let odd = index.search_filtered(&vectors[7], 3, &|id| id % 2 == 1).unwrap();
        assert!(odd.iter().all(|hit| hit.id % 2 == 1 && hit.id != 7));
        assert!(matches!(
            index.insert(1, &[f32::NAN; 16]),
            Err(Error::InvalidVector { .. })
        ));
        assert!(matches!(
            index.search(&[1.0; 3], 1),
            Err(Error::DimensionMismatch { .. })
        ));
    }
}

#[wasm_bindgen_test]
fn filters_splitters_and_keywords_work_without_a_file_system() {
    let metadata = json!({"lang": "en", "year": 2024}).as_object().unwrap().clone();
    assert!(Filter::and([Filter::eq("lang", json!("en")), Filter::gt("year", 2000.0)]).matches(&metadata));
    assert!(!Filter::eq("lang", json!("de")).matches(&metadata));

    let chunks = RecursiveSplitter::new(40, 10).split("First paragraph here.\n\nSecond paragraph, a little longer.");
    assert!(chunks.len() >= 2 && chunks.iter().all(|c| c.text.chars().count() <= 40));
    let sections = MarkdownSplitter::new(80, 0).split("# Setup\n\nInstall it.\n\n## Linux\n\nUse apt.");
    assert_eq!(sections.last().unwrap().section, "Setup > Linux");

    let keywords = KeywordIndex::new();
    keywords.insert("a", "the payment failed with ERR4471");
    keywords.insert("b", "all payments went through");
    assert_eq!(keywords.search("ERR4471", 5)[0].0, "a");
}
