//! `kanade jetstream setup|status`, and the runbooks' hand tools: `kanade jetstream kv ls|get|put|del` and
//! `kanade jetstream object ls|info|get|rm` on any KV bucket or object store. Changing or deleting in one of
//! kanade's own asks for `--yes` (exit 2 without it) and every change is audited.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use kanade_ops::jetstream::Action;
use kanade_ops::store::{self, BucketName, KvKey, ObjectName};
use serde_json::json;
use tokio::io::AsyncReadExt as _;

use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE, connect};

/// Most bytes `kv put` reads from a file or stdin; the bucket's own limit (at most the server's `max_payload`) is
/// checked after. A NATS server takes at most 64 MiB in one message.
const MAX_PUT_READ: u64 = 64 * 1024 * 1024;
/// An object larger than this is not written to a terminal (use `-O FILE` or a redirect).
const MAX_TERMINAL_OBJECT: u64 = 64 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Without a bucket: every KV bucket (values, bytes, whether it is kanade's own). With one: its keys.
    Ls {
        /// A bucket's name: letters, digits, `_`, `-`.
        bucket: Option<BucketName>,
    },
    /// Print a key's value raw on stdout (binary-safe); `-o json`: value (or value_base64), revision, created.
    Get {
        bucket: BucketName,
        /// Letters, digits and `-/_=.`; no `..`, no leading or trailing `.`.
        key: KvKey,
    },
    /// Put a value: the VALUE argument, or `--file F` (`-` for stdin).
    #[command(group = clap::ArgGroup::new("source").required(true).args(["value", "file"]))]
    Put {
        bucket: BucketName,
        key: KvKey,
        /// The value, as text.
        value: Option<String>,
        /// Read the value from this file, or stdin with `-`.
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// Needed to change one of kanade's own buckets by hand.
        #[arg(long)]
        yes: bool,
    },
    /// Delete a key (its history stays, as KV deletes do).
    Del {
        bucket: BucketName,
        key: KvKey,
        /// Needed to delete in one of kanade's own buckets by hand.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ObjectCommand {
    /// Without a store: every object store. With one: its objects (name, size, modified, SHA-256).
    Ls {
        /// A store's name: letters, digits, `_`, `-`.
        store: Option<BucketName>,
    },
    /// One object: size, chunks, modified, digest, metadata.
    Info { store: BucketName, name: ObjectName },
    /// Stream an object to a file (`-O FILE`, written whole or not at all) or to stdout; the digest is checked.
    Get {
        store: BucketName,
        name: ObjectName,
        /// Write to this file instead of stdout.
        #[arg(short = 'O', long = "output-file", value_name = "FILE")]
        output_file: Option<PathBuf>,
    },
    /// Delete an object.
    Rm {
        store: BucketName,
        name: ObjectName,
        /// Needed to delete from one of kanade's own stores by hand.
        #[arg(long)]
        yes: bool,
    },
}

/// Refuses a change to one of kanade's own buckets or stores unless `--yes` was given.
fn confirmed(kind: &str, name: &BucketName, own: bool, yes: bool) -> bool {
    if own && !yes {
        output::note(&format!(
            "error: `{name}` is one of kanade's own {kind}s: changing it by hand bypasses kanade's own checks; add \
             --yes to do it anyway"
        ));
        return false;
    }
    true
}

pub async fn kv(cli: &Cli, command: &KvCommand) -> anyhow::Result<ExitCode> {
    match command {
        KvCommand::Put { bucket, yes, .. } | KvCommand::Del { bucket, yes, .. }
            if !confirmed("KV bucket", bucket, bucket.is_kanade_bucket(), *yes) =>
        {
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        _ => {}
    }
    let value = match command {
        KvCommand::Put { value: Some(value), .. } => Some(Bytes::from(value.clone().into_bytes())),
        KvCommand::Put { file: Some(file), .. } => Some(read_value(file).await?),
        _ => None,
    };
    let client = connect(cli).await?;
    let js = async_nats::jetstream::new(client.clone());
    match command {
        KvCommand::Ls { bucket: None } => {
            let buckets = store::buckets(&js).await?;
            summaries(cli, "BUCKET", &buckets)?;
        }
        KvCommand::Ls { bucket: Some(bucket) } => {
            let keys = store::keys(&js, bucket).await?;
            match cli.output {
                Format::Json => output::json(&keys)?,
                Format::Table | Format::Csv => {
                    output::raw(false, &keys.iter().map(|k| format!("{k}\n")).collect::<String>())
                }
            }
        }
        KvCommand::Get { bucket, key } => {
            let value = store::get(&js, bucket, key).await?;
            match cli.output {
                Format::Json => {
                    let (text, base64) = match std::str::from_utf8(&value.value) {
                        Ok(text) => (Some(text.to_owned()), None),
                        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&value.value))),
                    };
                    output::json(&json!({
                        "bucket": bucket, "key": key, "value": text, "value_base64": base64,
                        "revision": value.revision, "created": value.created,
                    }))?;
                }
                Format::Table | Format::Csv => output::bytes(&value.value),
            }
        }
        KvCommand::Put { bucket, key, .. } => {
            let value = value.context("no value to put")?;
            let bytes = value.len();
            let revision = store::put(&js, bucket, key, value).await?;
            let details = json!({"bucket": bucket, "key": key, "revision": revision, "bytes": bytes,
                "kanade": bucket.is_kanade_bucket()});
            crate::audit::record(&client, "kv_put", &format!("{bucket}/{key}"), details.clone()).await;
            changed(cli, &details, &format!("put `{key}` in `{bucket}` (revision {revision}, {bytes} bytes)"))?;
        }
        KvCommand::Del { bucket, key, .. } => {
            let revision = store::delete(&js, bucket, key).await?;
            let details = json!({"bucket": bucket, "key": key, "deleted_revision": revision, "kanade": bucket.is_kanade_bucket()});
            crate::audit::record(&client, "kv_del", &format!("{bucket}/{key}"), details.clone()).await;
            changed(cli, &details, &format!("deleted `{key}` in `{bucket}` (was revision {revision})"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn object(cli: &Cli, command: &ObjectCommand) -> anyhow::Result<ExitCode> {
    if let ObjectCommand::Rm { store, yes, .. } = command
        && !confirmed("object store", store, store.is_kanade_store(), *yes)
    {
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let client = connect(cli).await?;
    let js = async_nats::jetstream::new(client.clone());
    match command {
        ObjectCommand::Ls { store: None } => {
            let stores = store::stores(&js).await?;
            summaries(cli, "STORE", &stores)?;
        }
        ObjectCommand::Ls { store: Some(name) } => {
            let objects = store::objects(&js, name).await?;
            match cli.output {
                Format::Json => output::json(&objects)?,
                Format::Table | Format::Csv => {
                    let rows: Vec<Vec<String>> = objects
                        .iter()
                        .map(|o| {
                            vec![
                                o.name.clone(),
                                o.size.to_string(),
                                o.modified.map_or_else(|| "-".into(), |at| at.to_rfc3339()),
                                o.sha256.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect();
                    output::table(&["NAME", "SIZE", "MODIFIED", "SHA256"], &rows);
                }
            }
        }
        ObjectCommand::Info { store: name, name: object } => {
            let info = store::object(&js, name, object).await?;
            match cli.output {
                Format::Json => output::json(&info)?,
                Format::Table | Format::Csv => {
                    let mut rows = vec![
                        vec!["name".into(), info.name.clone()],
                        vec!["size".into(), info.size.to_string()],
                        vec!["chunks".into(), info.chunks.to_string()],
                        vec!["modified".into(), info.modified.map_or_else(|| "-".into(), |at| at.to_rfc3339())],
                        vec!["digest".into(), info.digest.clone().unwrap_or_else(|| "-".into())],
                        vec!["sha256".into(), info.sha256.clone().unwrap_or_else(|| "-".into())],
                    ];
                    if let Some(description) = &info.description {
                        rows.push(vec!["description".into(), description.clone()]);
                    }
                    rows.extend(info.metadata.iter().map(|(k, v)| vec![format!("metadata.{k}"), v.clone()]));
                    output::table(&["FIELD", "VALUE"], &rows);
                }
            }
        }
        ObjectCommand::Get { store: name, name: object, output_file } => {
            let (info, reader) = store::open_object(&js, name, object).await?;
            match output_file {
                Some(path) => {
                    let written = download(reader, path).await?;
                    output::note(&format!("wrote {written} bytes of `{object}` to `{}`", path.display()));
                }
                None => {
                    if std::io::stdout().is_terminal() && info.size > MAX_TERMINAL_OBJECT {
                        output::note(&format!(
                            "error: `{object}` is {} bytes; not writing it to a terminal: use -O FILE or redirect \
                             stdout",
                            info.size
                        ));
                        return Ok(ExitCode::from(EXIT_USAGE));
                    }
                    to_stdout(reader).await.with_context(|| format!("cannot read `{object}` from `{name}`"))?;
                }
            }
        }
        ObjectCommand::Rm { store: name, name: object, .. } => {
            let gone = store::delete_object(&js, name, object).await?;
            let details = json!({"store": name, "name": object, "size": gone.size, "sha256": gone.sha256,
                "kanade": name.is_kanade_store()});
            crate::audit::record(&client, "object_rm", &format!("{name}/{object}"), details.clone()).await;
            changed(cli, &details, &format!("deleted `{object}` from `{name}` ({} bytes)", gone.size))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summaries(cli: &Cli, header: &str, list: &[store::Summary]) -> anyhow::Result<()> {
    match cli.output {
        Format::Json => output::json(&list)?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    let own = if s.kanade { "kanade" } else { "" };
                    vec![s.name.clone(), s.values.to_string(), s.bytes.to_string(), own.into()]
                })
                .collect();
            output::table(&[header, "VALUES", "BYTES", "OWNER"], &rows);
        }
    }
    Ok(())
}

/// What a change reports: the details as JSON, or a sentence on stderr.
fn changed(cli: &Cli, details: &serde_json::Value, sentence: &str) -> anyhow::Result<()> {
    match cli.output {
        Format::Json => output::json(details),
        Format::Table | Format::Csv => {
            output::note(sentence);
            Ok(())
        }
    }
}

/// A value for `kv put` from a file or stdin (`-`), read up to [`MAX_PUT_READ`].
async fn read_value(file: &Path) -> anyhow::Result<Bytes> {
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        tokio::io::stdin()
            .take(MAX_PUT_READ + 1)
            .read_to_end(&mut bytes)
            .await
            .context("cannot read the value from stdin")
    } else {
        let opened = tokio::fs::File::open(file).await.with_context(|| format!("cannot open `{}`", file.display()))?;
        opened
            .take(MAX_PUT_READ + 1)
            .read_to_end(&mut bytes)
            .await
            .with_context(|| format!("cannot read `{}`", file.display()))
    };
    read?;
    if bytes.len() as u64 > MAX_PUT_READ {
        anyhow::bail!("the value is over {MAX_PUT_READ} bytes, more than any NATS message can carry");
    }
    Ok(Bytes::from(bytes))
}

/// Streams an object into `path`: written beside it first and renamed only once the last byte is read and the
/// digest checked, so a failed download leaves no half-written file under that name.
async fn download(mut reader: async_nats::jetstream::object_store::Object, path: &Path) -> anyhow::Result<u64> {
    let file_name = path.file_name().with_context(|| format!("`{}` is not a file name", path.display()))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(file_name);
    partial_name.push(format!(".part-{}", std::process::id()));
    let partial = path.with_file_name(partial_name);
    let result = async {
        let mut file = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("cannot create `{}`", partial.display()))?;
        let written = tokio::io::copy(&mut reader, &mut file).await.context("cannot download the object")?;
        file.sync_all().await.with_context(|| format!("cannot write `{}`", partial.display()))?;
        tokio::fs::rename(&partial, path).await.with_context(|| format!("cannot write `{}`", path.display()))?;
        anyhow::Ok(written)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}

/// Streams an object to stdout. A closed pipe (`| head`) is not an error, as for every other output.
async fn to_stdout(mut reader: async_nats::jetstream::object_store::Object) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    match tokio::io::copy(&mut reader, &mut stdout).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(err) => return Err(err.into()),
    }
    tokio::io::AsyncWriteExt::flush(&mut stdout).await.or_else(|err| match err.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(err.into()),
    })
}

pub async fn setup(cli: &Cli, replicas: usize) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let js = async_nats::jetstream::new(client);
    let changes = kanade_ops::jetstream::setup(&js, replicas).await?;
    match cli.output {
        Format::Json => output::json(&changes)?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| {
                    let action = match &c.action {
                        Action::Created => "created".to_owned(),
                        Action::Updated(fields) => format!("updated ({})", fields.join(", ")),
                        Action::Unchanged => "unchanged".to_owned(),
                    };
                    vec![c.kind.label().to_owned(), c.name.clone(), action]
                })
                .collect();
            output::table(&["KIND", "NAME", "ACTION"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(cli: &Cli) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let js = async_nats::jetstream::new(client);
    let statuses = kanade_ops::jetstream::status(&js).await?;
    let missing = statuses.iter().filter(|s| !s.exists).count();
    match cli.output {
        Format::Json => output::json(&statuses)?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = statuses
                .iter()
                .map(|s| {
                    if let Some(why) = &s.unavailable {
                        return vec![
                            s.kind.label().into(),
                            s.name.clone(),
                            format!("unavailable: {why}"),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                        ];
                    }
                    if !s.exists {
                        return vec![
                            s.kind.label().into(),
                            s.name.clone(),
                            "missing".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                        ];
                    }
                    let replicas = match s.current_replicas {
                        Some(current) => format!("{current}/{} current", s.replicas),
                        None => s.replicas.to_string(),
                    };
                    let state = if s.current_replicas.is_some_and(|c| c < s.replicas) { "degraded" } else { "ok" };
                    vec![
                        s.kind.label().into(),
                        s.name.clone(),
                        state.into(),
                        s.messages.to_string(),
                        s.bytes.to_string(),
                        replicas,
                        s.leader.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(&["KIND", "NAME", "STATE", "MESSAGES", "BYTES", "REPLICAS", "LEADER"], &rows);
            if let Some(cluster) = statuses.iter().find_map(|s| s.cluster.clone()) {
                let mut lagging: Vec<&str> =
                    statuses.iter().flat_map(|s| s.lagging.iter().map(String::as_str)).collect();
                lagging.sort_unstable();
                lagging.dedup();
                let degraded = statuses.iter().filter(|s| s.current_replicas.is_some_and(|c| c < s.replicas)).count();
                if lagging.is_empty() {
                    output::note(&format!("cluster `{cluster}`: every replica current"));
                } else {
                    output::note(&format!(
                        "cluster `{cluster}`: {degraded} resource(s) degraded; peers offline or behind: {}",
                        lagging.join(", ")
                    ));
                }
            }
            if let Some(leases) = statuses.iter().find(|s| s.name == kanade_shared::resources::KV_LEASES && s.exists) {
                match &leases.lease {
                    Some(lease) => {
                        let ago = (chrono::Utc::now() - lease.renewed_at).num_seconds().max(0);
                        output::note(&format!(
                            "backend `{}` leads (since {}, lease renewed {ago} s ago)",
                            lease.holder,
                            lease.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ));
                    }
                    None => output::note("no backend leads: none is running, or the last one's lease lapsed"),
                }
            }
            if missing > 0 {
                output::note(&format!("{missing} resource(s) missing: run `kanade jetstream setup`"));
            }
        }
    }
    let unavailable = statuses.iter().filter(|s| s.unavailable.is_some()).count();
    if unavailable > 0 && cli.output != Format::Json {
        output::note(&format!("{unavailable} resource(s) did not answer"));
    }
    Ok(if missing + unavailable > 0 { ExitCode::from(crate::EXIT_ERROR) } else { ExitCode::SUCCESS })
}
