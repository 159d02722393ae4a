//! Job metrics through the `metrics` facade, rendered by the Prometheus recorder and read back with
//! `prometheus-parse`. A binary of its own: the recorder is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use kai_core::Agent;
use kai_core::testing::ScriptedModel;
use kai_jobs::{JobQueue, JobSpec, SqliteQueue, Worker};

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == name && labels.iter().all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match &sample.value {
        prometheus_parse::Value::Counter(value)
        | prometheus_parse::Value::Gauge(value)
        | prometheus_parse::Value::Untyped(value) => *value,
        prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
        prometheus_parse::Value::Summary(_) => panic!("{name} is a summary"),
    }
}

#[tokio::test]
async fn finished_jobs_their_waits_durations_and_the_queue_depth_are_measured() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let queue = Arc::new(SqliteQueue::open(directory.path().join("jobs.sqlite3")).unwrap());
    let model = ScriptedModel::new()
        .text("one")
        .fail(kai_core::Error::Authentication { message: "no".into() });
    let worker = Worker::new(queue.clone(), "w").agent("a", Agent::builder(model).build().unwrap());
    for input in ["x", "y", "z"] {
        queue.enqueue(JobSpec::agent("a", input)).await.unwrap();
    }
    worker.run_one().await.unwrap();
    worker.run_one().await.unwrap();
    let text = handle.render();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    assert_eq!(
        value(&parsed, "kai_jobs_finished_total", &[("outcome", "succeeded")]),
        1.0
    );
    assert_eq!(value(&parsed, "kai_jobs_finished_total", &[("outcome", "failed")]), 1.0);
    assert_eq!(value(&parsed, "kai_jobs_queued", &[]), 1.0);
    assert_eq!(value(&parsed, "kai_job_wait_seconds_count", &[]), 2.0);
    assert_eq!(
        value(&parsed, "kai_job_duration_seconds_count", &[("outcome", "succeeded")]),
        1.0
    );
}
