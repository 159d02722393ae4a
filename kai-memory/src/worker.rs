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

    /// Queues `work` for the worker's thread at once; the future resolves to its result. The work runs
    /// even if the future is dropped, and the future holds no part of the worker, so stopping it never
    /// waits on a future nobody polls. A panic in the work is raised again in the future's caller,
    /// and the worker goes on with the next job.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, Error>> {
        let (done, result) = futures::channel::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
        });
        let queued = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        boxed(async move {
            if !queued {
                return Err(stopped());
            }
            match result.await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => Err(stopped()),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    /// A job that panics raises the panic in its caller; the worker goes on with the next job.
    #[test]
    fn a_panicking_job_does_not_stop_the_worker() {
        let worker = Worker::spawn("test-worker").unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(worker.run(|| -> Result<(), Error> { panic!("a bug in the work") }))
        }));
        assert!(panicked.is_err());
        assert_eq!(block_on(worker.run(|| Ok(7))).unwrap(), 7);
    }

    /// Work is queued when asked for: a future never polled does not hold the worker open, and its
    /// work still runs.
    #[test]
    fn stopping_never_waits_on_an_unpolled_future() {
        let mut worker = Worker::spawn("test-worker").unwrap();
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&ran);
        let pending = worker.run(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        worker.stop();
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
        drop(pending);
        assert!(matches!(block_on(worker.run(|| Ok(()))), Err(Error::Database(_))));
    }
}
