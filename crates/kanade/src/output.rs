//! Printing: tables for people, JSON for scripts, messages on stderr. Readable without colour; none is used.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// The rows of a list as CSV (a header, then a line per row); other commands print as `table` does.
    Csv,
}

/// Writes to stdout. A closed pipe (`kanade ... | head`) is not an error: the reader has what it wanted, and the
/// command's exit code must still be the one it would have had.
fn stdout_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    stdout_line(&serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        stdout_line(padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints rows as CSV under a header, quoted as RFC 4180 says (a cell with a comma, quote or newline is quoted).
pub fn csv(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(header)?;
    for row in rows {
        writer.write_record(row)?;
    }
    let bytes = writer.into_inner().map_err(|err| anyhow::anyhow!("cannot write CSV: {}", err.error()))?;
    self::bytes(&bytes);
    Ok(())
}

/// A message for the operator, on stderr.
pub fn note(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Prints an error with its chain of causes on stderr.
pub fn error(err: &anyhow::Error) {
    note(&format!("error: {err}"));
    for cause in err.chain().skip(1) {
        note(&format!("  caused by: {cause}"));
    }
}

/// Writes raw text to stdout or stderr without a newline, as a script produced it.
pub fn raw(to_stderr: bool, text: &str) {
    use std::io::Write;
    if to_stderr {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Writes bytes to stdout as they are (a KV value, binary-safe). A closed pipe is not an error.
pub fn bytes(data: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(data);
    let _ = out.flush();
}

/// Bytes as people read memory sizes: `16.0 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_memory_sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(16 << 30), "16.0 GiB");
        assert_eq!(size(1536 << 20), "1.5 GiB");
        assert_eq!(size(u64::MAX), "16777216.0 TiB");
    }
}
