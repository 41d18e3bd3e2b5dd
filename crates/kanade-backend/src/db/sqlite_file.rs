//! A SQLite database named by the operator is opened or created, whatever form its URL takes (`sqlite:///abs`,
//! `sqlite://relative`, `sqlite:path`, each with or without a query): sqlx creates a missing file only with
//! `mode=rwc`, and says "unable to open database file" without it, or when the file's folder is missing or not
//! writable. This module reads the URL as sqlx does, adds `mode=rwc` unless the operator chose a mode, and checks
//! the folder first so the error names it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SqliteFileError {
    #[error("the folder `{}` for the SQLite database `{}` does not exist; create it or name another file", folder.display(), file.display())]
    FolderMissing { folder: PathBuf, file: PathBuf },
    #[error("`{}`, the folder for the SQLite database `{}`, is not a folder", folder.display(), file.display())]
    NotAFolder { folder: PathBuf, file: PathBuf },
    #[error(
        "the folder `{}` for the SQLite database `{}` is not writable by this user (SQLite keeps its journal beside the database)",
        folder.display(),
        file.display()
    )]
    FolderNotWritable {
        folder: PathBuf,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the SQLite database `{}` is not a file", file.display())]
    NotAFile { file: PathBuf },
    #[error("the SQLite database URL `{url}` names a file that is not UTF-8 once decoded")]
    NotUtf8 { url: String },
}

/// What a sqlite URL names, read the way sqlx reads it.
#[derive(Debug, PartialEq, Eq)]
struct Parsed<'a> {
    /// `None` for an in-memory database.
    file: Option<PathBuf>,
    query: Option<&'a str>,
    /// The operator's own `mode=`, if any.
    mode: Option<String>,
}

fn parse(url: &str) -> Result<Parsed<'_>, SqliteFileError> {
    // sqlx strips `sqlite://` and `sqlite:` the same way, so `sqlite:///abs` is `/abs` and `sqlite://rel` is `rel`.
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, query) = match rest.split_once('?') {
        Some((database, query)) => (database, Some(query)),
        None => (rest, None),
    };
    let mode = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes()).find(|(key, _)| key == "mode").map(|(_, value)| value.into_owned())
    });
    let in_memory = database.is_empty() || database == ":memory:" || mode.as_deref() == Some("memory");
    let file = if in_memory {
        None
    } else {
        let decoded = percent_encoding::percent_decode_str(database)
            .decode_utf8()
            .map_err(|_| SqliteFileError::NotUtf8 { url: url.to_owned() })?;
        Some(PathBuf::from(decoded.as_ref()))
    };
    Ok(Parsed { file, query, mode })
}

/// The URL to connect with: `url` plus `mode=rwc` when the operator gave no mode, after checking that the file's
/// folder exists and can be written. With the operator's own `mode=ro` or `mode=rw` the URL is kept as written and
/// a missing file stays an error of SQLite's.
pub fn prepare(url: &str) -> Result<String, SqliteFileError> {
    let parsed = parse(url)?;
    let Some(file) = parsed.file else { return Ok(url.to_owned()) };
    if parsed.mode.is_some() {
        return Ok(url.to_owned());
    }
    check_folder(&file)?;
    Ok(match parsed.query {
        Some("") => format!("{url}mode=rwc"),
        Some(_) => format!("{url}&mode=rwc"),
        None => format!("{url}?mode=rwc"),
    })
}

/// The file's folder exists, is a folder, and takes a new file (SQLite writes `-wal` and `-shm` files there).
fn check_folder(file: &Path) -> Result<(), SqliteFileError> {
    let shown = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&folder) {
        Err(_) => return Err(SqliteFileError::FolderMissing { folder: shown(&folder), file: shown(file) }),
        Ok(meta) if !meta.is_dir() => {
            return Err(SqliteFileError::NotAFolder { folder: shown(&folder), file: shown(file) });
        }
        Ok(_) => {}
    }
    if file.metadata().is_ok_and(|meta| meta.is_dir()) {
        return Err(SqliteFileError::NotAFile { file: shown(file) });
    }
    // Asking for permission bits would miss ACLs, read-only mounts and root's exemptions; trying is the answer.
    let probe = folder.join(format!(".kanade-backend-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(SqliteFileError::FolderNotWritable { folder: shown(&folder), file: shown(file), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_form_names_its_file_and_keeps_the_operators_query() {
        let file = |url: &str| parse(url).unwrap().file;
        assert_eq!(file("sqlite:///var/lib/kanade/state.db"), Some("/var/lib/kanade/state.db".into()));
        assert_eq!(file("sqlite://relative.db"), Some("relative.db".into()));
        assert_eq!(file("sqlite:path/to.db"), Some("path/to.db".into()));
        assert_eq!(file("sqlite:///a%20b/c%3Fd.db?cache=shared"), Some("/a b/c?d.db".into()));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://"), None);
        assert_eq!(file("sqlite://x.db?mode=memory"), None);
        assert_eq!(parse("sqlite://x.db?cache=shared&mode=ro").unwrap().mode.as_deref(), Some("ro"));
        assert!(matches!(parse("sqlite:///%FF.db"), Err(SqliteFileError::NotUtf8 { .. })));
    }

    #[test]
    fn a_url_without_a_mode_gains_rwc_and_one_with_a_mode_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let base = format!("sqlite://{}", dir.path().join("s.db").display());
        assert_eq!(prepare(&base).unwrap(), format!("{base}?mode=rwc"));
        assert_eq!(prepare(&format!("{base}?cache=shared")).unwrap(), format!("{base}?cache=shared&mode=rwc"));
        assert_eq!(prepare(&format!("{base}?")).unwrap(), format!("{base}?mode=rwc"));
        for kept in [format!("{base}?mode=ro"), format!("{base}?mode=rw"), "sqlite::memory:".to_owned()] {
            assert_eq!(prepare(&kept).unwrap(), kept);
        }
    }

    #[test]
    fn a_missing_or_unusable_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/state.db");
        let err = prepare(&format!("sqlite://{}", missing.display())).unwrap_err().to_string();
        assert!(err.contains(&format!("the folder `{}`", dir.path().join("no/such/dir").display())), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = prepare(&format!("sqlite:{}/state.db", file.display())).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
        let err = prepare(&format!("sqlite:{}", dir.path().display())).unwrap_err().to_string();
        assert!(err.contains("is not a file"), "{err}");
    }
}
