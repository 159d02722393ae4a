//! A thread of its own for a store's blocking work (SQLite commits, fsyncs), so that async callers
//! never block the executor that awaits them, whichever executor it is.

use std::sync::mpsc;
use std::thread::JoinHandle;

use kai_core::{BoxFuture, boxed};

use crate::error::Error;

/// A call for the worker's thread.
type Job = Box<dyn FnOnce() + Send>;

/// One thread running jobs one after another, in the order they were sent.
#[derive(Debug)]
pub(crate) struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// A worker on a new thread named `name`.
    pub(crate) fn spawn(name: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || queue.into_iter().for_each(|job| job()))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the worker's thread; the future resolves to its result. Work that has started
    /// completes even if its future is dropped.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, Error>> {
        let jobs = self.jobs.clone();
        boxed(async move {
            let (done, result) = futures::channel::oneshot::channel();
            let job: Job = Box::new(move || {
                let _ = done.send(work());
            });
            jobs.ok_or_else(stopped)?.send(job).map_err(|_| stopped())?;
            result.await.map_err(|_| stopped())?
        })
    }

    /// Lets the work under way finish, then stops the thread.
    pub(crate) fn stop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("a store's thread panicked");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopped() -> Error {
    Error::Database("the store's thread has stopped".into())
}
