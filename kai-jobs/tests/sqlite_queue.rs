//! The embedded queue keeps the queue contract (tests/contract), on a SQLite file per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod contract;

use contract::Fixture;
use kai_core::async_trait;
use kai_jobs::{JobQueue, SqliteQueue};

/// A SQLite file in a directory of its own, removed with the fixture.
struct Sqlite(tempfile::TempDir);

#[async_trait]
impl Fixture for Sqlite {
    async fn open(&self) -> Box<dyn JobQueue> {
        Box::new(SqliteQueue::open(self.0.path().join("jobs.sqlite3")).unwrap())
    }
}

queue_contract!(Sqlite(tempfile::tempdir().unwrap()));
