//! `kanade script publish|list` and `kanade app publish|list`: versioned objects in the `scripts` and
//! `app_packages` object stores, each with its SHA-256 recorded at publish time and checked against the broker's
//! own digest. A published version is immutable: the same bytes again are accepted, different bytes refused.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use async_nats::jetstream::object_store::{ObjectInfo, ObjectMetadata, ObjectStore};
use base64::Engine as _;
use futures::StreamExt;
use kanade_shared::JobId;
use kanade_shared::manifest::Version;
use kanade_shared::resources::{OBJ_APP_PACKAGES, OBJ_SCRIPTS};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::output::{self, Format};
use crate::{Cli, connect};

/// Metadata key under which kanade keeps an object's SHA-256 (lowercase hex).
pub const SHA256_KEY: &str = "sha256";

/// Which object store, and its limits.
#[derive(Debug, Clone, Copy)]
pub enum Store {
    Scripts,
    Apps,
}

impl Store {
    pub fn bucket(self) -> &'static str {
        match self {
            Store::Scripts => OBJ_SCRIPTS,
            Store::Apps => OBJ_APP_PACKAGES,
        }
    }

    fn max_bytes(self) -> u64 {
        match self {
            Store::Scripts => kanade_shared::wire::MAX_SCRIPT_BYTES as u64,
            Store::Apps => 8 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ObjectCommand {
    /// Upload FILE as NAME/VERSION and print its SHA-256.
    Publish {
        /// Lowercase a-z, 0-9, `_`, `-`.
        name: JobId,
        /// e.g. 0.43.0
        #[arg(value_parser = |v: &str| Version::new(v))]
        version: Version,
        file: PathBuf,
    },
    /// List what is published.
    List,
}

#[derive(Debug, Serialize)]
pub struct Published {
    pub name: String,
    pub version: String,
    pub size: u64,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
}

pub async fn run(cli: &Cli, store: Store, command: &ObjectCommand) -> anyhow::Result<ExitCode> {
    match command {
        ObjectCommand::Publish { name, version, file } => {
            let client = connect(cli).await?;
            let objects = open(&client, store).await?;
            let published = publish(&objects, store, name, version, file).await?;
            if published.action.is_none() {
                let action = match store {
                    Store::Scripts => "script-publish",
                    Store::Apps => "app-publish",
                };
                let target = key(name, version.as_str());
                let details = serde_json::json!({ "sha256": published.sha256, "size": published.size });
                crate::audit::record(&client, action, &target, details).await;
            }
            match cli.output {
                Format::Json => output::json(&published)?,
                Format::Table => {
                    if published.action == Some("unchanged") {
                        output::note(&format!(
                            "{}/{} was already published with these bytes",
                            published.name, published.version
                        ));
                    }
                    output::raw(false, &format!("{}\n", published.sha256));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::List => {
            let client = connect(cli).await?;
            let objects = open(&client, store).await?;
            let mut all = list(&objects).await?;
            all.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
            match cli.output {
                Format::Json => output::json(&all)?,
                Format::Table => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|p| vec![p.name.clone(), p.version.clone(), p.size.to_string(), p.sha256.clone()])
                        .collect();
                    output::table(&["NAME", "VERSION", "BYTES", "SHA256"], &rows);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn open(client: &async_nats::Client, store: Store) -> anyhow::Result<ObjectStore> {
    let js = async_nats::jetstream::new(client.clone());
    js.get_object_store(store.bucket())
        .await
        .with_context(|| format!("object store `{}` is missing: run `kanade jetstream setup`", store.bucket()))
}

/// The object's key: `name/version`.
pub fn key(name: &JobId, version: &str) -> String {
    format!("{name}/{version}")
}

async fn sha256_of(file: &Path) -> anyhow::Result<(u64, String)> {
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut reader = std::fs::File::open(&file).with_context(|| format!("cannot read `{}`", file.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).with_context(|| format!("cannot read `{}`", file.display()))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok((size, hex(&hasher.finalize())))
    })
    .await?
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The broker's digest (`SHA-256=<base64url>`) as lowercase hex.
fn broker_sha256(info: &ObjectInfo) -> Option<String> {
    let encoded = info.digest.as_deref()?.strip_prefix("SHA-256=")?;
    let raw = base64::engine::general_purpose::URL_SAFE.decode(encoded).ok()?;
    Some(hex(&raw))
}

pub async fn publish(
    objects: &ObjectStore,
    store: Store,
    name: &JobId,
    version: &Version,
    file: &Path,
) -> anyhow::Result<Published> {
    let meta = tokio::fs::metadata(file).await.with_context(|| format!("cannot read `{}`", file.display()))?;
    if !meta.is_file() {
        bail!("`{}` is not a file", file.display());
    }
    if meta.len() > store.max_bytes() {
        bail!(
            "`{}` is {} bytes; the limit for {} is {}",
            file.display(),
            meta.len(),
            store.bucket(),
            store.max_bytes()
        );
    }
    let (size, sha256) = sha256_of(file).await?;
    let object = key(name, version.as_str());
    let published = |action| Published {
        name: name.to_string(),
        version: version.as_str().to_owned(),
        size,
        sha256: sha256.clone(),
        action,
    };
    if let Some(existing) = find(objects, &object).await? {
        if existing.sha256 == sha256 {
            return Ok(published(Some("unchanged")));
        }
        bail!(
            "`{object}` is already published with SHA-256 {}; a published version never changes: publish a new version",
            existing.sha256
        );
    }

    let reader = tokio::fs::File::open(file).await.with_context(|| format!("cannot read `{}`", file.display()))?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(object.clone());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut reader = progress.wrap_async_read(reader);
    let metadata = ObjectMetadata {
        name: object.clone(),
        description: Some(format!("{} {}", name, version.as_str())),
        metadata: [(SHA256_KEY.to_owned(), sha256.clone())].into(),
        ..Default::default()
    };
    let info = objects.put(metadata, &mut reader).await.with_context(|| format!("cannot upload `{object}`"))?;
    progress.finish_and_clear();
    // The file may have changed between hashing and uploading; the broker's digest is of what it stored.
    if broker_sha256(&info).as_deref() != Some(sha256.as_str()) || info.size as u64 != size {
        let _ = objects.delete(&object).await;
        bail!("`{}` changed while it was uploaded; nothing was published", file.display());
    }
    Ok(published(None))
}

fn describe(info: &ObjectInfo) -> Published {
    let (name, version) = info.name.split_once('/').unwrap_or((info.name.as_str(), ""));
    Published {
        name: name.to_owned(),
        version: version.to_owned(),
        size: info.size as u64,
        sha256: info.metadata.get(SHA256_KEY).cloned().or_else(|| broker_sha256(info)).unwrap_or_default(),
        action: None,
    }
}

/// The published object `key`, if there is one.
pub async fn find(objects: &ObjectStore, key: &str) -> anyhow::Result<Option<Published>> {
    use async_nats::jetstream::object_store::InfoErrorKind;
    match objects.info(key).await {
        Ok(info) if !info.deleted => Ok(Some(describe(&info))),
        Ok(_) => Ok(None),
        Err(err) if err.kind() == InfoErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot look up `{key}`")),
    }
}

pub async fn list(objects: &ObjectStore) -> anyhow::Result<Vec<Published>> {
    let mut entries = objects.list().await?;
    let mut out = Vec::new();
    while let Some(info) = entries.next().await {
        let info = info?;
        if info.deleted {
            continue;
        }
        out.push(describe(&info));
    }
    Ok(out)
}
