//! A thread of its own for a store's blocking work (SQLite commits, fsyncs), so that async callers
//! never block the executor that awaits them, whichever executor it is.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use kai_core::{BoxFuture, boxed};

use crate::error::Error;

/// A call for a worker's thread, given that thread's state.
type Job<S> = Box<dyn FnOnce(&S) + Send>;

/// Threads taking jobs from one queue in the order they were sent, each with a state of its own (a
/// database connection, say). With one thread, jobs run one after another in that order.
#[derive(Debug)]
pub(crate) struct Worker<S = ()> {
    jobs: Option<mpsc::Sender<Job<S>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Worker {
    /// A worker on one new thread named `name`.
    pub(crate) fn spawn(name: &str) -> std::io::Result<Self> {
        Self::spawn_pool(name, vec![()])
    }
}

impl<S: Send + 'static> Worker<S> {
    /// A worker with one thread, named `name`, per state in `states`.
    pub(crate) fn spawn_pool(name: &str, states: Vec<S>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job<S>>();
        let queue = Arc::new(Mutex::new(queue));
        let mut worker = Self {
            jobs: Some(jobs),
            threads: Vec::with_capacity(states.len()),
        };
        for state in states {
            let queue = Arc::clone(&queue);
            let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job, not while running it.
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match next {
                        Ok(job) => job(&state),
                        Err(_) => return,
                    }
                }
            });
            // On an error, dropping `worker` stops the threads already started.
            worker.threads.push(thread?);
        }
        Ok(worker)
    }

    /// Queues `work` for the worker's threads at once; the future resolves to its result. The work runs
    /// even if the future is dropped, and the future holds no part of the worker, so stopping it never
    /// waits on a future nobody polls. A panic in the work is raised again in the future's caller,
    /// and the worker goes on with the next job.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&S) -> Result<R, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, Error>> {
        let (done, result) = futures::channel::oneshot::channel();
        let job: Job<S> = Box::new(move |state| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(state)));
            let _ = done.send(outcome);
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
}

impl<S> Worker<S> {
    /// Lets the work under way and queued finish, then stops the threads.
    pub(crate) fn stop(&mut self) {
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::warn!("a store's thread panicked");
            }
        }
    }
}

impl<S> Drop for Worker<S> {
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
            block_on(worker.run(|_| -> Result<(), Error> { panic!("a bug in the work") }))
        }));
        assert!(panicked.is_err());
        assert_eq!(block_on(worker.run(|_| Ok(7))).unwrap(), 7);
    }

    /// A pool runs jobs side by side, each on its thread's own state.
    #[test]
    fn a_pool_runs_jobs_at_once_each_with_its_state() {
        let worker = Worker::spawn_pool("test-pool", vec![1, 2]).unwrap();
        let both = std::sync::Arc::new(std::sync::Barrier::new(2));
        let job = |both: std::sync::Arc<std::sync::Barrier>| {
            move |state: &i32| {
                // Returns only once the other job is running too.
                both.wait();
                Ok(*state)
            }
        };
        let first = worker.run(job(both.clone()));
        let second = worker.run(job(both));
        let mut states = block_on(futures::future::try_join(first, second))
            .map(|(a, b)| [a, b])
            .unwrap();
        states.sort_unstable();
        assert_eq!(states, [1, 2]);
    }

    /// Work is queued when asked for: a future never polled does not hold the worker open, and its
    /// work still runs.
    #[test]
    fn stopping_never_waits_on_an_unpolled_future() {
        let mut worker = Worker::spawn("test-worker").unwrap();
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&ran);
        let pending = worker.run(move |_| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        worker.stop();
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
        drop(pending);
        assert!(matches!(block_on(worker.run(|_| Ok(()))), Err(Error::Database(_))));
    }
}
