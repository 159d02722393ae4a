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
        // The package's directory at run time: a build cache shared by clones keeps the builder's path.
        let script = format!(
            "{}/../scripts/setup/postgres.sh",
            std::env::var("CARGO_MANIFEST_DIR").unwrap()
        );
        let output = Command::new("bash").arg(&script).arg("start").output().unwrap();
        assert!(
            output.status.success(),
            "postgres did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
}

/// Runs `sql` on its own connection.
async fn execute(sql: &str) {
    let (client, connection) = tokio_postgres::connect(url(), tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    connection.await.unwrap().unwrap();
}

/// A store over table `kai_test_<name>`, emptied first (a failed run may have left it behind).
async fn store(name: &str, metric: Metric) -> PgStore {
    let table = format!("kai_test_{name}");
    execute(&format!("DROP TABLE IF EXISTS {table}")).await;
    PgStore::connect(url(), &table, metric, 3, 4).await.unwrap()
}

/// Removes a test's table.
async fn drop_store(name: &str) {
    execute(&format!("DROP TABLE kai_test_{name}")).await;
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
    drop_store("basic").await;
}

/// A server that accepts the connection and then says nothing: connecting fails after the URL's
/// `connect_timeout` (10 s without one) instead of waiting for ever.
#[tokio::test]
async fn a_silent_server_times_out() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let started = std::time::Instant::now();
    let url = format!("postgres://kai@127.0.0.1:{port}/postgres?connect_timeout=1");
    let result = PgStore::connect(&url, "kai_test_silent", Metric::L2, 3, 1).await;
    assert!(matches!(result, Err(Error::Database(_))), "{result:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    holding.abort();
}

/// A server that goes quiet on an open connection (paused, cut off) fails the call with
/// `Error::TimedOut` after the call timeout instead of holding it for ever; that connection is closed,
/// not reused, so the next call, once the server answers again, works on a fresh one.
#[tokio::test]
async fn a_server_that_stops_answering_fails_the_call_and_loses_the_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // A proxy to the real server that, while `frozen`, reads requests and passes nothing on.
    let frozen = Arc::new(AtomicBool::new(false));
    let backend = url().split_once('@').unwrap().1.split_once('/').unwrap().0.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    let switch = Arc::clone(&frozen);
    let proxy = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (frozen, backend) = (Arc::clone(&switch), backend.clone());
            tokio::spawn(async move {
                let server = tokio::net::TcpStream::connect(&backend).await?;
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let answers = tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let n = client_read.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    if !frozen.load(Ordering::SeqCst) {
                        server_write.write_all(&buffer[..n]).await?;
                    }
                }
                answers.abort();
                Ok::<(), std::io::Error>(())
            });
        }
    });
    let table = "kai_test_quiet";
    execute(&format!("DROP TABLE IF EXISTS {table}")).await;
    let store = PgStore::connect(&format!("postgres://kai@{front}/postgres"), table, Metric::L2, 3, 1)
        .await
        .unwrap()
        .with_call_timeout(std::time::Duration::from_secs(1));
    store.upsert(&[doc(1, "en", json!(2020))]).await.unwrap();

    frozen.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let result = store.search(&[1.0, 0.0, 0.0], 1, None).await;
    assert!(matches!(result, Err(Error::TimedOut(_))), "{result:?}");
    assert_eq!(result.unwrap_err().kind(), "timed_out");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The pool holds one connection: reused, it would still be waiting for the lost answer.
    frozen.store(false, Ordering::SeqCst);
    assert_eq!(store.get("doc-1").await.unwrap().unwrap().id, "doc-1");
    assert_eq!(store.count().await.unwrap(), 1);
    proxy.abort();
    drop_store("quiet").await;
}

/// The HNSW scan stops at `hnsw.ef_search` candidates (at most 1,000): a search for more than that
/// still returns k rows when the table has them.
#[tokio::test]
async fn an_unfiltered_search_returns_k_rows_beyond_the_index_scan() {
    let store = store("many", Metric::L2).await;
    let docs: Vec<Document> = (0..4_000).map(|i| doc(i, "en", json!(i))).collect();
    store.upsert(&docs).await.unwrap();
    let found = store.search(&[1.0, 0.0, 0.25], 1_100, None).await.unwrap();
    assert_eq!(found.len(), 1_100);
    drop_store("many").await;
}

#[tokio::test]
async fn sql_filters_select_exactly_what_filter_matches_selects() {
    let store = store("filters", Metric::L2).await;
    // Metadata with the key, without it, and holding JSON null or a string where numbers are compared.
    let docs: Vec<Document> = (0..60)
        .map(|i| {
            let mut doc = doc(i, ["en", "de", "fr"][i % 3], json!(2000 + i));
            match i % 5 {
                0 => drop(doc.metadata.remove("lang")),
                1 => drop(doc.metadata.insert("lang".into(), serde_json::Value::Null)),
                2 => drop(doc.metadata.insert("year".into(), json!("unknown"))),
                _ => {}
            }
            doc
        })
        .collect();
    store.upsert(&docs).await.unwrap();
    let not = |filter| Filter::Not {
        filter: Box::new(filter),
    };
    let filters = [
        Filter::eq("lang", json!("de")),
        not(Filter::eq("lang", json!("de"))),
        not(Filter::In {
            key: "lang".into(),
            values: vec![json!("de"), json!("fr")],
        }),
        Filter::eq("lang", serde_json::Value::Null),
        not(Filter::gt("year", 2030.0)),
        Filter::or([not(Filter::Exists { key: "lang".into() }), Filter::lt("year", 2010.0)]),
        not(Filter::and([
            Filter::eq("lang", json!("en")),
            Filter::gt("year", 2020.0),
        ])),
        // jsonb compares numbers by value: 2003 and 2003.0 are one year.
        Filter::eq("year", json!(2003.0)),
        Filter::In {
            key: "year".into(),
            values: vec![json!(2004.0), json!(2008)],
        },
    ];
    for filter in &filters {
        let mut found: Vec<String> = store
            .search(&[1.0, 0.0, 0.25], 100, Some(filter))
            .await
            .unwrap()
            .into_iter()
            .map(|hit| hit.document.id)
            .collect();
        found.sort();
        let mut expected: Vec<String> = docs
            .iter()
            .filter(|d| filter.matches(&d.metadata))
            .map(|d| d.id.clone())
            .collect();
        expected.sort();
        assert!(
            !expected.is_empty() && expected.len() < docs.len(),
            "{filter:?} is not a test"
        );
        assert_eq!(found, expected, "{filter:?}");
    }
    drop_store("filters").await;
}

#[tokio::test]
async fn inner_product_search_uses_an_hnsw_index_and_a_table_of_another_shape_is_refused() {
    let store = store("dot", Metric::Dot).await;
    let vectors = [
        ("long", [2.0, 0.0, 0.0]),
        ("unit", [1.0, 0.0, 0.0]),
        ("across", [0.0, 1.0, 0.0]),
    ];
    let docs: Vec<Document> = vectors
        .iter()
        .map(|(id, v)| Document {
            id: (*id).into(),
            text: (*id).into(),
            metadata: serde_json::Map::new(),
            embedding: v.to_vec(),
        })
        .collect();
    store.upsert(&docs).await.unwrap();
    let hits = store.search(&[1.0, 0.0, 0.0], 3, None).await.unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.document.id.as_str()).collect();
    assert_eq!(ids, ["long", "unit", "across"]);
    assert_eq!(hits[0].distance, -2.0);

    let (client, connection) = tokio_postgres::connect(url(), tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let indexes: Vec<String> = client
        .query("SELECT indexdef FROM pg_indexes WHERE tablename = 'kai_test_dot'", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        indexes
            .iter()
            .any(|index| index.contains("USING hnsw (embedding vector_ip_ops)")),
        "{indexes:?}"
    );
    drop(client);
    connection.await.unwrap().unwrap();

    for (metric, dimensions) in [(Metric::Dot, 4), (Metric::Cosine, 3)] {
        let other = PgStore::connect(url(), "kai_test_dot", metric, dimensions, 1).await;
        assert!(matches!(other, Err(Error::InvalidConfig(_))), "{metric:?}/{dimensions}");
    }
    assert!(PgStore::connect(url(), "kai_test_dot", Metric::Dot, 3, 1).await.is_ok());
    drop_store("dot").await;
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
    drop_store("bad").await;
    // Unquoted SQL names fold to lower case; the shape check must fold them too.
    execute("DROP TABLE IF EXISTS kai_test_mixed").await;
    for _ in 0..2 {
        PgStore::connect(url(), "Kai_Test_Mixed", Metric::L2, 3, 1)
            .await
            .unwrap();
    }
    drop_store("mixed").await;
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
    drop_store("pool").await;
}

/// A test CA, and a server certificate for 127.0.0.1 it signed with the server's key (DER).
fn certificates() -> (rcgen::Certificate, rcgen::Certificate, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    (ca, server, server_key.serialize_der())
}

/// A TLS front for the test server, which pgserver builds without TLS: it answers PostgreSQL's
/// SSLRequest with `S`, completes a TLS handshake with `server` (signed by the returned CA), and
/// passes the decrypted bytes to the real server. Returns its URL and the CA certificate (PEM).
async fn tls_front() -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (ca, server, key) = certificates();
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
            )
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let backend = url().split_once('@').unwrap().1.split_once('/').unwrap().0.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                // SSLRequest: length 8, then the code 80877103.
                let mut request = [0u8; 8];
                client.read_exact(&mut request).await?;
                if request != [0, 0, 0, 8, 4, 210, 22, 47] {
                    return Ok::<(), std::io::Error>(());
                }
                client.write_all(b"S").await?;
                let mut tls = acceptor.accept(client).await?;
                let mut plain = tokio::net::TcpStream::connect(&backend).await?;
                tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
                Ok(())
            });
        }
    });
    (format!("postgres://kai@{front}/postgres"), ca.pem())
}

#[tokio::test]
async fn tls_connections_verify_the_server_they_reach() {
    let (front, ca) = tls_front().await;
    let required = format!("{front}?sslmode=require");
    execute("DROP TABLE IF EXISTS kai_test_tls").await;

    let store = PgStore::connect_with_ca(&required, "kai_test_tls", Metric::L2, 3, 2, ca.as_bytes())
        .await
        .unwrap();
    store.upsert(&[doc(1, "en", json!(2024))]).await.unwrap();
    let hits = store.search(&[1.0, 0.0, 0.25], 1, None).await.unwrap();
    assert_eq!(hits[0].document.id, "doc-1");

    // The public roots do not vouch for the test CA, nor does another CA.
    let public = PgStore::connect(&required, "kai_test_tls", Metric::L2, 3, 1).await;
    assert!(
        matches!(&public, Err(Error::Database(message)) if message.contains("certificate")),
        "{public:?}"
    );
    let (other_ca, _, _) = certificates();
    let other = PgStore::connect_with_ca(&required, "kai_test_tls", Metric::L2, 3, 1, other_ca.pem().as_bytes()).await;
    assert!(
        matches!(&other, Err(Error::Database(message)) if message.contains("certificate")),
        "{other:?}"
    );
    let no_pem = PgStore::connect_with_ca(&required, "kai_test_tls", Metric::L2, 3, 1, b"not a certificate").await;
    assert!(matches!(no_pem, Err(Error::InvalidConfig(_))));
    // `require` against a server without TLS (the plain one) is refused, not downgraded.
    let plain = PgStore::connect(&format!("{}?sslmode=require", url()), "kai_test_tls", Metric::L2, 3, 1).await;
    assert!(matches!(plain, Err(Error::Database(_))), "{plain:?}");
    drop_store("tls").await;
}

/// The store a configuration describes, its URL (password and all) read from the file it references.
#[cfg(feature = "config")]
#[tokio::test]
async fn a_store_opens_from_configuration() {
    use kai_core::config::{ConfigFormat, KaiConfig};
    use kai_memory::store::{ConfiguredStore, store_from_config};

    execute("DROP TABLE IF EXISTS kai_test_configured").await;
    let directory = tempfile::tempdir().unwrap();
    let secret = directory.path().join("database-url");
    std::fs::write(&secret, format!("{}\n", url())).unwrap();
    let yaml = format!(
        "memory:\n  store: postgres\n  url: {{file: {}}}\n  table: kai_test_configured\n  metric: l2\n  dimensions: 3\n  pool_size: 2\n",
        secret.display()
    );
    let config = KaiConfig::parse(&yaml, ConfigFormat::Yaml, []).unwrap();
    let opened = store_from_config(config.memory.as_ref().unwrap()).await.unwrap();
    assert!(matches!(opened, ConfiguredStore::Postgres(_)));
    let store = opened.store();
    let docs: Vec<Document> = (0..10).map(|i| doc(i, "en", json!(2000))).collect();
    store.upsert(&docs).await.unwrap();
    assert_eq!(store.metric(), Metric::L2);
    let hits = store.search(&docs[4].embedding, 1, None).await.unwrap();
    assert_eq!(hits[0].document.id, "doc-4");
    opened.close().unwrap();
    drop_store("configured").await;
}
