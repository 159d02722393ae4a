//! The Prometheus exporter.

use std::net::SocketAddr;

use crate::error::Error;

/// Installs a Prometheus recorder as the process's `metrics` recorder, serving the exposition format
/// on `http://<address>/metrics`, with kAI's latency histograms bucketed from 5 ms to 2 minutes.
/// Returns the handle, which also renders the text on demand.
///
/// The exporter runs on a thread and Tokio runtime of its own, so it serves whatever the program's
/// own threads are doing (and works in programs without Tokio). A second recorder cannot be
/// installed in one process: that is [`Error::Config`].
pub fn install_prometheus(address: SocketAddr) -> Result<metrics_exporter_prometheus::PrometheusHandle, Error> {
    let config = |error: String| Error::Config {
        message: format!("the Prometheus exporter: {error}"),
    };
    let buckets = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ];
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets(&buckets)
        .map_err(|error| config(error.to_string()))?;
    let (installed, outcome) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kai-prometheus".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = installed.send(Err(config(error.to_string())));
                    return;
                }
            };
            runtime.block_on(async move {
                // Built inside this runtime: its listener and upkeep task belong to it.
                let (recorder, exporter) = match builder.build() {
                    Ok(built) => built,
                    Err(error) => {
                        let _ = installed.send(Err(config(error.to_string())));
                        return;
                    }
                };
                let handle = recorder.handle();
                if let Err(error) = metrics::set_global_recorder(recorder) {
                    let _ = installed.send(Err(config(error.to_string())));
                    return;
                }
                let _ = installed.send(Ok(handle));
                if let Err(error) = exporter.await {
                    tracing::warn!(?error, "the Prometheus exporter stopped");
                }
            });
        })
        .map_err(|error| config(error.to_string()))?;
    outcome
        .recv()
        .map_err(|_| config("its thread stopped before it started".into()))?
}
