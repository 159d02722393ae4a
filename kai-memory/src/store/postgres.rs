//! The scale-out store: PostgreSQL with pgvector (feature `postgres`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;
use crate::index::Metric;
use crate::store::{Document, Filter, MemoryStore, ScoredDocument};

/// Documents in a PostgreSQL table with a pgvector column and an HNSW index, behind a connection pool.
///
/// Filters become SQL over the `metadata` JSONB column. A filtered search that the HNSW index answers
/// with fewer than `k` rows (pgvector filters after the index scan) is re-run as an exact scan, so a
/// selective filter never loses matches.
pub struct PgStore {
    pool: Pool,
    table: String,
    metric: Metric,
    dimensions: usize,
    call_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("table", &self.table)
            .field("metric", &self.metric)
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

/// A database error with every cause in its chain: tokio-postgres and the pool keep the useful part
/// (the server's message, why a TLS handshake failed) in the sources, not in their own text.
fn db(error: impl std::error::Error) -> Error {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    Error::Database(message)
}

/// `outcome` of a call on `client`; a connection whose call timed out may still be waiting for its
/// answer, so it is closed rather than given back to the pool, where the next call would queue
/// behind that answer.
fn settle<T>(client: Object, outcome: Result<T, Error>) -> Result<T, Error> {
    if matches!(outcome, Err(Error::TimedOut(_))) {
        drop(Object::take(client));
    }
    outcome
}

/// How long making a connection may take (the URL's `connect_timeout` sets another limit): the TCP
/// connection, TLS and PostgreSQL's startup together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a free connection of the pool.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call may wait for the server's answers, by default (see [`PgStore::with_call_timeout`]).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) with a pool of `pool_size` connections and
    /// creates the extension, the table and its HNSW index if they are missing. An existing table of
    /// another dimension count or metric is refused with [`Error::InvalidConfig`].
    ///
    /// With `sslmode=require` in the URL, connections use TLS and verify the server's certificate and
    /// name against the public web roots (Mozilla's, built in): libpq's `verify-full`. For a server
    /// with a certificate from a private CA, use [`connect_with_ca`](Self::connect_with_ca). Without
    /// it (`disable`, or `prefer`, the default) connections are plain text, fit for loopback and
    /// private networks only: libpq's `prefer` would encrypt without checking whom it talks to,
    /// which stops eavesdroppers but not an impostor.
    pub async fn connect(
        url: &str,
        table: &str,
        metric: Metric,
        dimensions: usize,
        pool_size: usize,
    ) -> Result<Self, Error> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::connect_trusting(url, table, metric, dimensions, pool_size, roots).await
    }

    /// [`connect`](Self::connect), trusting the certificate authorities in `ca_pem` (PEM) instead of
    /// the public roots. Refused with [`Error::InvalidConfig`] if `ca_pem` holds no certificate.
    pub async fn connect_with_ca(
        url: &str,
        table: &str,
        metric: Metric,
        dimensions: usize,
        pool_size: usize,
        ca_pem: &[u8],
    ) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(ca_pem) {
            let certificate = certificate.map_err(|e| Error::InvalidConfig(format!("the CA file: {e}")))?;
            roots
                .add(certificate)
                .map_err(|e| Error::InvalidConfig(format!("a CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::InvalidConfig("the CA file holds no certificate".into()));
        }
        Self::connect_trusting(url, table, metric, dimensions, pool_size, roots).await
    }

    async fn connect_trusting(
        url: &str,
        table: &str,
        metric: Metric,
        dimensions: usize,
        pool_size: usize,
        roots: rustls::RootCertStore,
    ) -> Result<Self, Error> {
        let valid = table
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && table.len() <= 48;
        if !valid {
            return Err(Error::InvalidConfig(format!("{table:?} is not a plain SQL table name")));
        }
        if dimensions == 0 || dimensions > 16_000 {
            return Err(Error::InvalidConfig(
                "pgvector columns hold 1 to 16,000 dimensions".into(),
            ));
        }
        let config: tokio_postgres::Config = url.parse().map_err(db)?;
        // A server that accepts the connection and then says nothing must not hold a caller for ever.
        let connect_timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Require {
            // The provider is chosen here rather than taken from the process default, which an
            // application may have set to another one, or not at all.
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(db)?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Manager::from_config(config, MakeRustlsConnect::new(tls), manager_config)
        } else {
            Manager::from_config(config, NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(connect_timeout))
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .build()
            .map_err(db)?;
        let store = Self {
            pool,
            table: table.to_owned(),
            metric,
            dimensions,
            call_timeout: CALL_TIMEOUT,
        };
        let ops = match metric {
            Metric::Cosine => "vector_cosine_ops",
            Metric::Dot => "vector_ip_ops",
            Metric::L2 => "vector_l2_ops",
        };
        let client = store.pool.get().await.map_err(db)?;
        let checked = store.within(store.prepare_table(&client, ops)).await;
        settle(client, checked)?;
        Ok(store)
    }

    /// Gives up on a call after `timeout` rather than [`CALL_TIMEOUT`]: a server that accepted a
    /// query and never answers (paused, cut off by the network) then fails the call with
    /// [`Error::TimedOut`], and the connection is closed rather than reused.
    #[must_use]
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// `work`, or [`Error::TimedOut`] once the call timeout has passed.
    async fn within<T>(&self, work: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
        tokio::time::timeout(self.call_timeout, work)
            .await
            .unwrap_or_else(|_| Err(Error::TimedOut(format!("the database call ({:?})", self.call_timeout))))
    }

    /// Creates the extension, table and index where missing, and checks that an existing table has
    /// this store's shape.
    async fn prepare_table(&self, client: &Object, ops: &str) -> Result<(), Error> {
        let (dimensions, metric) = (self.dimensions, self.metric);
        client
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS vector;
                 CREATE TABLE IF NOT EXISTS {t} (
                     id TEXT PRIMARY KEY,
                     text TEXT NOT NULL,
                     metadata JSONB NOT NULL,
                     embedding vector({dimensions}) NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS {t}_embedding_hnsw ON {t} USING hnsw (embedding {ops});",
                t = self.table
            ))
            .await
            .map_err(db)?;
        // The statements above leave an existing table as it is: check that it is this store's shape.
        let column: Option<String> = client
            .query_opt(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = $1::text::regclass AND attname = 'embedding' AND NOT attisdropped",
                &[&self.table],
            )
            .await
            .map_err(db)?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(db)?;
        if column.as_deref() != Some(format!("vector({dimensions})").as_str()) {
            return Err(Error::InvalidConfig(format!(
                "table {} exists with embedding column {column:?}, not vector({dimensions})",
                self.table
            )));
        }
        let index: Option<String> = client
            .query_opt(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = lower($1)",
                &[&format!("{}_embedding_hnsw", self.table)],
            )
            .await
            .map_err(db)?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(db)?;
        if !index
            .as_deref()
            .is_some_and(|def| def.contains(&format!("USING hnsw (embedding {ops})")))
        {
            return Err(Error::InvalidConfig(format!(
                "table {} exists with an embedding index other than HNSW over {ops} ({metric:?}): {index:?}",
                self.table
            )));
        }
        Ok(())
    }

    fn operator(&self) -> &'static str {
        match self.metric {
            Metric::Cosine => "<=>",
            Metric::Dot => "<#>",
            Metric::L2 => "<->",
        }
    }

    async fn upsert_now(&self, documents: &[Document]) -> Result<(), Error> {
        for document in documents {
            self.metric.prepare(&document.embedding, self.dimensions)?;
        }
        let mut client = self.pool.get().await.map_err(db)?;
        let written = self.within(self.write(&mut client, documents)).await;
        settle(client, written)
    }

    async fn write(&self, client: &mut Object, documents: &[Document]) -> Result<(), Error> {
        let tx = client.transaction().await.map_err(db)?;
        let statement = tx
            .prepare(&format!(
                "INSERT INTO {} (id, text, metadata, embedding) VALUES ($1, $2, $3, $4::text::vector)
                 ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata,
                 embedding = EXCLUDED.embedding",
                self.table
            ))
            .await
            .map_err(db)?;
        for document in documents {
            let metadata = serde_json::Value::Object(document.metadata.clone());
            tx.execute(
                &statement,
                &[
                    &document.id,
                    &document.text,
                    &metadata,
                    &vector_text(&document.embedding),
                ],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn search_now(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>, Error> {
        self.metric.prepare(query, self.dimensions)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(vector_text(query))];
        let condition = match filter {
            Some(filter) => to_sql(filter, &mut params),
            None => "TRUE".to_owned(),
        };
        params.push(Box::new(i64::try_from(k).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT id, text, metadata, embedding::text, (embedding {op} $1::text::vector)::float4 AS distance
             FROM {t} WHERE {condition} ORDER BY embedding {op} $1::text::vector LIMIT ${limit}",
            op = self.operator(),
            t = self.table,
            limit = params.len()
        );
        let mut client = self.pool.get().await.map_err(db)?;
        let found = self.within(self.nearest(&mut client, &sql, &params, k)).await;
        settle(client, found)
    }

    async fn nearest(
        &self,
        client: &mut Object,
        sql: &str,
        params: &[Box<dyn ToSql + Sync + Send>],
        k: usize,
    ) -> Result<Vec<ScoredDocument>, Error> {
        let references: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let tx = client.transaction().await.map_err(db)?;
        let ef = k.saturating_mul(4).clamp(40, 1000);
        tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef}"))
            .await
            .map_err(db)?;
        let mut rows = tx.query(sql, &references).await.map_err(db)?;
        if rows.len() < k {
            // The index scan stops at ef_search candidates (at most 1,000), skips rows deleted but not
            // yet vacuumed, and pgvector filters after it: an exact scan finds what it dropped. On a
            // large table with a selective filter that scan reads every row (pgvector 0.8's iterative
            // scans would not; the test server has 0.6).
            tx.batch_execute("SET LOCAL enable_indexscan = off").await.map_err(db)?;
            rows = tx.query(sql, &references).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        rows.iter().map(scored).collect()
    }
}

/// The pgvector text form, `[1,2,3]`.
fn vector_text(vector: &[f32]) -> String {
    let mut text = String::with_capacity(vector.len() * 10 + 2);
    text.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&x.to_string());
    }
    text.push(']');
    text
}

fn parse_vector(text: &str) -> Result<Vec<f32>, Error> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|x| {
            x.trim().parse::<f32>().map_err(|_| Error::Corrupt {
                what: format!("a stored vector does not parse: {x}"),
            })
        })
        .collect()
}

fn document(row: &Row) -> Result<Document, Error> {
    let metadata: serde_json::Value = row.try_get(2).map_err(db)?;
    let serde_json::Value::Object(metadata) = metadata else {
        return Err(Error::Corrupt {
            what: "a document's metadata is not a JSON object".into(),
        });
    };
    Ok(Document {
        id: row.try_get(0).map_err(db)?,
        text: row.try_get(1).map_err(db)?,
        metadata,
        embedding: parse_vector(row.try_get::<_, &str>(3).map_err(db)?)?,
    })
}

fn scored(row: &Row) -> Result<ScoredDocument, Error> {
    Ok(ScoredDocument {
        document: document(row)?,
        distance: row.try_get(4).map_err(db)?,
    })
}

/// A filter as a SQL condition over `metadata`, appending its values to `params`.
fn to_sql(filter: &Filter, params: &mut Vec<Box<dyn ToSql + Sync + Send>>) -> String {
    let mut bind = |value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        format!("${}", params.len())
    };
    match filter {
        // A missing key makes the comparison NULL, which `NOT` would keep NULL (and so exclude the
        // row); `Filter::matches` calls it false, so `NOT` includes the row. COALESCE agrees with it.
        Filter::Eq { key, value } => {
            let (k, v) = (bind(Box::new(key.clone())), bind(Box::new(value.clone())));
            format!("COALESCE((metadata -> {k}::text) = {v}::jsonb, FALSE)")
        }
        Filter::In { key, values } => {
            let (k, v) = (bind(Box::new(key.clone())), bind(Box::new(values.clone())));
            format!("COALESCE((metadata -> {k}::text) = ANY({v}::jsonb[]), FALSE)")
        }
        Filter::Gt { key, value } | Filter::Lt { key, value } => {
            let op = if matches!(filter, Filter::Gt { .. }) { ">" } else { "<" };
            let (k, v) = (bind(Box::new(key.clone())), bind(Box::new(*value)));
            format!(
                "(CASE WHEN jsonb_typeof(metadata -> {k}::text) = 'number' THEN (metadata ->> {k}::text)::float8 {op} {v}::float8 ELSE FALSE END)"
            )
        }
        Filter::Exists { key } => {
            let k = bind(Box::new(key.clone()));
            format!("jsonb_exists(metadata, {k}::text)")
        }
        Filter::And { filters } if filters.is_empty() => "TRUE".into(),
        Filter::Or { filters } if filters.is_empty() => "FALSE".into(),
        Filter::And { filters } => join(filters, " AND ", params),
        Filter::Or { filters } => join(filters, " OR ", params),
        Filter::Not { filter } => format!("(NOT {})", to_sql(filter, params)),
    }
}

fn join(filters: &[Filter], separator: &str, params: &mut Vec<Box<dyn ToSql + Sync + Send>>) -> String {
    let parts: Vec<String> = filters.iter().map(|f| to_sql(f, params)).collect();
    format!("({})", parts.join(separator))
}

#[kai_core::async_trait]
impl MemoryStore for PgStore {
    async fn upsert(&self, documents: &[Document]) -> Result<(), Error> {
        self.upsert_now(documents).await
    }

    async fn delete(&self, ids: &[String]) -> Result<usize, Error> {
        let client = self.pool.get().await.map_err(db)?;
        let sql = format!("DELETE FROM {} WHERE id = ANY($1)", self.table);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let deleted = self
            .within(async { client.execute(&sql, &[&ids]).await.map_err(db) })
            .await;
        Ok(settle(client, deleted)? as usize)
    }

    async fn get(&self, id: &str) -> Result<Option<Document>, Error> {
        let client = self.pool.get().await.map_err(db)?;
        let sql = format!(
            "SELECT id, text, metadata, embedding::text FROM {} WHERE id = $1",
            self.table
        );
        let row = self
            .within(async { client.query_opt(&sql, &[&id]).await.map_err(db) })
            .await;
        settle(client, row)?.as_ref().map(document).transpose()
    }

    async fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>, Error> {
        self.search_now(query, k, filter).await
    }

    async fn count(&self) -> Result<usize, Error> {
        let client = self.pool.get().await.map_err(db)?;
        let sql = format!("SELECT count(*) FROM {}", self.table);
        let row = self
            .within(async { client.query_one(&sql, &[]).await.map_err(db) })
            .await;
        Ok(settle(client, row)?.try_get::<_, i64>(0).map_err(db)? as usize)
    }

    fn metric(&self) -> Metric {
        self.metric
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_text_form() {
        let v = vec![1.0, -0.5, 3.25e-8, 1e20];
        assert_eq!(parse_vector(&vector_text(&v)).unwrap(), v);
        assert!(parse_vector("[1,x]").is_err());
    }

    #[test]
    fn filters_become_parameterised_sql() {
        let filter = Filter::and([
            Filter::eq("lang", serde_json::json!("en")),
            Filter::Not {
                filter: Box::new(Filter::gt("year", 2020.0)),
            },
        ]);
        let mut params = vec![];
        let sql = to_sql(&filter, &mut params);
        assert_eq!(params.len(), 4);
        assert!(
            sql.starts_with("(COALESCE((metadata -> $1::text) = $2::jsonb, FALSE) AND (NOT (CASE"),
            "{sql}"
        );
        assert!(!sql.contains("lang"), "values are bound, never inlined");
    }
}
