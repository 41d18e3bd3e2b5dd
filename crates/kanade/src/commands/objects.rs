//! `kanade script publish|list` and `kanade app publish|list`: versioned objects in the `scripts` and
//! `app_packages` object stores, each with its SHA-256 recorded at publish time and checked against the broker's
//! own digest. A published version is immutable: the same bytes again are accepted, different bytes refused.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use kanade_shared::JobId;
use kanade_shared::manifest::Version;
use sha2::{Digest, Sha256};

use crate::output::{self, Format};
use crate::{Cli, connect};

use kanade_ops::objects::{Published, SHA256_KEY, Store, broker_sha256, find, hex, key, list};

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

pub async fn run(cli: &Cli, store: Store, command: &ObjectCommand) -> anyhow::Result<ExitCode> {
    match command {
        ObjectCommand::Publish { name, version, file } => {
            let client = connect(cli).await?;
            let objects = open(&client, store).await?;
            let published = publish(&objects, store, name.as_str(), version.as_str(), file).await?;
            if published.action.is_none() {
                let action = match store {
                    Store::Scripts => "script-publish",
                    Store::Apps => "app-publish",
                    Store::Agents => "agent-publish",
                };
                let target = key(name, version.as_str());
                let details = serde_json::json!({ "sha256": published.sha256, "size": published.size });
                crate::audit::record(&client, action, &target, details).await;
            }
            match cli.output {
                Format::Json => output::json(&published)?,
                Format::Table | Format::Csv => {
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
            let all = list(&objects).await?;
            match cli.output {
                Format::Json => output::json(&all)?,
                Format::Table | Format::Csv => {
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
    Ok(kanade_ops::objects::open(client, store).await?)
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

/// Uploads `file` as `name/version` (both already checked by the caller) unless that exact content is there.
pub async fn publish(
    objects: &ObjectStore,
    store: Store,
    name: &str,
    version: &str,
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
    let object = format!("{name}/{version}");
    let published =
        |action| Published { name: name.to_owned(), version: version.to_owned(), size, sha256: sha256.clone(), action };
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
        description: Some(format!("{name} {version}")),
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
