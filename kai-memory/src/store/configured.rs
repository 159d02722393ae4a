//! The document store a [`MemoryConfig`] describes.

use kai_core::config::{MemoryConfig, MetricName, StoreKind};

use crate::error::Error;
use crate::store::MemoryStore;
#[cfg(feature = "postgres")]
use crate::store::PgStore;
use crate::store::{EmbeddedStore, Metric, StoreConfig};

/// A store opened from configuration: the embedded one or Postgres, as the configuration says.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfiguredStore {
    /// SQLite and an HNSW index in a directory.
    Embedded(EmbeddedStore),
    /// Postgres with pgvector.
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
}

impl ConfiguredStore {
    /// The store, to search and write.
    pub fn store(&self) -> &dyn MemoryStore {
        match self {
            ConfiguredStore::Embedded(store) => store,
            #[cfg(feature = "postgres")]
            ConfiguredStore::Postgres(store) => store,
        }
    }

    /// Closes the store: the embedded one saves its index and releases its directory
    /// ([`EmbeddedStore::close`]); a Postgres pool is closed when dropped.
    pub fn close(self) -> Result<(), Error> {
        match self {
            ConfiguredStore::Embedded(store) => store.close(),
            #[cfg(feature = "postgres")]
            ConfiguredStore::Postgres(_) => Ok(()),
        }
    }
}

/// Opens the store `config` describes: the embedded store in `path`, or Postgres at the URL its
/// reference resolves to (with the `postgres` feature; otherwise [`Error::InvalidConfig`]), with the
/// configured metric and dimensions.
pub async fn store_from_config(config: &MemoryConfig) -> Result<ConfiguredStore, Error> {
    let metric = match config.metric {
        MetricName::Cosine => Metric::Cosine,
        MetricName::Dot => Metric::Dot,
        MetricName::L2 => Metric::L2,
    };
    let missing = |field: &str| Error::InvalidConfig(format!("memory.{field}: the {:?} store needs it", config.store));
    match config.store {
        StoreKind::Embedded => {
            let path = config.path.as_ref().ok_or_else(|| missing("path"))?;
            Ok(ConfiguredStore::Embedded(EmbeddedStore::open(
                path,
                StoreConfig::new(metric, config.dimensions),
            )?))
        }
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => {
            let url = config.url.as_ref().ok_or_else(|| missing("url"))?;
            let url = url
                .resolve()
                .map_err(|error| Error::InvalidConfig(format!("memory.url: {error}")))?;
            let table = config.table.as_deref().unwrap_or("kai_documents");
            let pool = config.pool_size.unwrap_or(8);
            Ok(ConfiguredStore::Postgres(
                PgStore::connect(url.expose(), table, metric, config.dimensions, pool).await?,
            ))
        }
        #[cfg(not(feature = "postgres"))]
        StoreKind::Postgres => Err(Error::InvalidConfig(
            "memory.store: Postgres needs kai-memory's `postgres` feature".into(),
        )),
    }
}
