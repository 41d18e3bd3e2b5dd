//! Answers `agents.<pc>.logs` (`kanade logs`): the tail of the agent's own log files, or what was written after a
//! position an earlier answer gave (`--follow`), across the daily rotation.
//!
//! The request names no path: the agent lists its own log folder and reads only the files named like its own
//! (`<prefix>.<date>.log`, or `<prefix>.log`), regular files only, never a symlink. Reading happens off the async
//! runtime, backwards from the end with a bounded buffer, so a 10 GB file costs what its tail costs; every answer
//! is bounded by [`MAX_LOG_LINES`] and [`MAX_LOG_REPLY_BYTES`], a line by [`MAX_LINE_BYTES`], and the bytes read
//! for one answer by [`MAX_SCAN_BYTES`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use async_nats::{Client, Message};
use chrono::{DateTime, Utc};
use kanade_shared::wire::{LogPosition, LogsRefusal, LogsReply, LogsRequest, MAX_LOG_LINES, MAX_LOG_REPLY_BYTES};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::heartbeat::Malformed;

/// Longest line an answer carries; a longer one is cut there and the answer marked `truncated`.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most bytes read from the disk for one answer (a file of one endless line must not be read whole either).
pub const MAX_SCAN_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes read at a time when reading backwards.
const CHUNK: usize = 64 * 1024;
/// Log requests read at once; more are answered `busy` rather than queued.
const CONCURRENT_READS: usize = 2;
/// Room kept in a reply for everything but the lines (position, flags, JSON punctuation).
const REPLY_OVERHEAD: usize = 4 * 1024;
/// What a cut line ends with.
const CUT_MARK: &str = " …[line cut]";

/// What an agent that has no log file answers.
pub const STDERR_ONLY: &str = "this agent logs to stderr only (no log file configured)";

/// Where the agent's log files are: `dir`, each named `<prefix>.<date>.<suffix>` (daily rotation) or
/// `<prefix>.<suffix>`; without the `.<suffix>` when `suffix` is empty (`[log] file` with no extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    pub dir: PathBuf,
    pub prefix: String,
    pub suffix: String,
}

/// Answers log requests for one agent, at most [`CONCURRENT_READS`] at once.
pub struct LogTail {
    files: Option<Arc<LogFiles>>,
    readers: Arc<Semaphore>,
}

impl LogTail {
    pub fn new(files: Option<LogFiles>) -> Self {
        Self { files: files.map(Arc::new), readers: Arc::new(Semaphore::new(CONCURRENT_READS)) }
    }

    /// Answers one request: a refusal at once, or the lines from a blocking read in `tasks`. A request that cannot
    /// be decoded or breaks the limits is counted as malformed and refused; one without a reply subject is only
    /// counted.
    pub async fn answer(&self, message: Message, client: &Client, tasks: &TaskTracker, malformed: &Malformed) {
        let Some(reply_to) = message.reply.clone() else {
            return malformed.record(&message.subject, message.payload.len(), &"log request without a reply subject");
        };
        let refuse = |code: &str, why: String| LogsReply {
            refused: Some(LogsRefusal { code: code.into(), message: why }),
            ..LogsReply::default()
        };
        let checked = serde_json::from_slice::<LogsRequest>(&message.payload)
            .map_err(|err| format!("invalid log request: {err}"))
            .and_then(|request| request.validate().map(|lines| (request, lines)).map_err(|err| err.to_string()));
        let (request, lines) = match checked {
            Ok(checked) => checked,
            Err(why) => {
                malformed.record(&message.subject, message.payload.len(), &why);
                return send(client, reply_to, &refuse("invalid_request", why)).await;
            }
        };
        let Some(files) = self.files.clone() else {
            return send(client, reply_to, &refuse("no_log_file", STDERR_ONLY.into())).await;
        };
        let Ok(permit) = self.readers.clone().try_acquire_owned() else {
            let why = "the agent is already reading its log for other requests; try again".to_owned();
            return send(client, reply_to, &refuse("busy", why)).await;
        };
        let client = client.clone();
        tasks.spawn(async move {
            let read = tokio::task::spawn_blocking(move || read(&files, &request, lines, Utc::now())).await;
            drop(permit);
            let reply = match read {
                Ok(Ok(reply)) => reply,
                Ok(Err(err)) => refuse("unreadable", format!("cannot read the log: {err}")),
                Err(err) => refuse("unreadable", format!("the log reader failed: {err}")),
            };
            send(&client, reply_to, &reply).await;
        });
    }
}

async fn send(client: &Client, reply_to: async_nats::Subject, reply: &LogsReply) {
    match serde_json::to_vec(reply) {
        Ok(body) => {
            if let Err(err) = client.publish(reply_to, body.into()).await {
                tracing::debug!(error = %err, "log answer not sent");
            }
        }
        Err(err) => tracing::error!(error = %err, "cannot encode log answer"),
    }
}

/// One of the agent's log files, as listed.
#[derive(Debug, Clone)]
struct LogFile {
    name: String,
    len: u64,
}

/// The agent's own log files, oldest first: dated ones by name (the date sorts), then an undated
/// `<prefix>.<suffix>`.
fn list(files: &LogFiles) -> io::Result<Vec<LogFile>> {
    let ending = if files.suffix.is_empty() { String::new() } else { format!(".{}", files.suffix) };
    let undated = format!("{}{ending}", files.prefix);
    let dated = format!("{}.", files.prefix);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&files.dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let ours =
            name == undated || (name.starts_with(&dated) && name.ends_with(&ending) && name.len() > undated.len());
        // `DirEntry::metadata` does not follow symlinks: a link planted in the folder is not read.
        let Ok(meta) = entry.metadata() else { continue };
        if ours && meta.file_type().is_file() {
            found.push((name == undated, LogFile { name, len: meta.len() }));
        }
    }
    found.sort_by(|(a_undated, a), (b_undated, b)| (a_undated, &a.name).cmp(&(b_undated, &b.name)));
    Ok(found.into_iter().map(|(_, file)| file).collect())
}

/// Reads what `request` asks for (blocking): the tail, or what follows `request.after`.
pub fn read(files: &LogFiles, request: &LogsRequest, lines: u32, now: DateTime<Utc>) -> io::Result<LogsReply> {
    let listed = list(files)?;
    let cutoff = request.since.and_then(|since| chrono::Duration::from_std(since).ok()).map(|since| now - since);
    let mut out = Collected::new(lines as usize);
    // A tail that stops at the most lines any answer carries was cut by the bound, not by the asker; a follow
    // continues from its position, so nothing is lost there.
    out.bound_by_lines = request.after.is_none() && lines == MAX_LOG_LINES;
    let position = match &request.after {
        None => tail(files, &listed, cutoff, &mut out)?,
        Some(after) => follow(files, &listed, after, &mut out)?,
    };
    Ok(LogsReply { lines: out.lines, position, truncated: out.truncated, refused: None })
}

/// The lines of an answer, within its budgets.
struct Collected {
    lines: Vec<String>,
    max_lines: usize,
    bytes: usize,
    scanned: u64,
    truncated: bool,
    /// Reaching `max_lines` means more was there than an answer carries.
    bound_by_lines: bool,
}

impl Collected {
    fn new(max_lines: usize) -> Self {
        Self { lines: Vec::new(), max_lines, bytes: 0, scanned: 0, truncated: false, bound_by_lines: false }
    }

    /// Takes a line if it fits; false once the answer has the lines asked for, or is full (then marked
    /// truncated: more was there than a reply carries).
    fn push(&mut self, raw: &[u8], cut: bool) -> bool {
        if self.lines.len() >= self.max_lines {
            self.truncated |= self.bound_by_lines;
            return false;
        }
        let mut line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
        if cut {
            line.push_str(CUT_MARK);
            self.truncated = true;
        }
        // Counted as encoded, escapes included, so the reply stays under NATS's max_payload whatever the bytes.
        let encoded = serde_json::to_string(&line).map_or(line.len() * 6, |json| json.len()) + 1;
        if self.bytes + encoded > MAX_LOG_REPLY_BYTES - REPLY_OVERHEAD {
            self.truncated = true;
            return false;
        }
        self.bytes += encoded;
        self.lines.push(line);
        true
    }

    fn over_scan_budget(&mut self) -> bool {
        if self.scanned > MAX_SCAN_BYTES {
            self.truncated = true;
        }
        self.scanned > MAX_SCAN_BYTES
    }
}

/// The time a line was logged at, if it starts with one (the tracing format: RFC 3339, then the level).
fn logged_at(line: &[u8]) -> Option<DateTime<Utc>> {
    let head = &line[..line.len().min(64)];
    let token = head.split(|b| b.is_ascii_whitespace()).next()?;
    let token = std::str::from_utf8(token).ok()?;
    DateTime::parse_from_rfc3339(token).ok().map(|at| at.with_timezone(&Utc))
}

/// The newest lines, newest file first and backwards through each, until the answer is full, a line older than
/// `cutoff` is met, or the scan budget is spent. Returns the position after the newest complete line.
fn tail(
    files: &LogFiles,
    listed: &[LogFile],
    cutoff: Option<DateTime<Utc>>,
    out: &mut Collected,
) -> io::Result<Option<LogPosition>> {
    let mut position = None;
    // Lines without a time of their own (a message's continuation lines) belong to the timed line above them.
    let mut untimed_since_timed = 0usize;
    'files: for (index, file) in listed.iter().enumerate().rev() {
        let newest = index + 1 == listed.len();
        let mut backward = Backward::open(files, file)?;
        let mut first = true;
        while let Some(line) = backward.next_line(out)? {
            if std::mem::take(&mut first) {
                // What follows the last newline: nothing, or a line still being written (in the newest file it
                // is left for the next follow; in an older one it is complete).
                if newest {
                    position = Some(LogPosition { file: file.name.clone(), offset: line.start });
                }
                if line.bytes.is_empty() || newest {
                    continue;
                }
            }
            if let Some(cutoff) = cutoff {
                match logged_at(&line.bytes) {
                    Some(at) if at < cutoff => {
                        out.lines.truncate(out.lines.len() - untimed_since_timed);
                        break 'files;
                    }
                    Some(_) => untimed_since_timed = 0,
                    None => untimed_since_timed += 1,
                }
            }
            if !out.push(&line.bytes, line.cut) {
                break 'files;
            }
        }
        if out.over_scan_budget() {
            break;
        }
    }
    out.lines.reverse();
    Ok(position)
}

/// A line read backwards.
struct BackLine {
    bytes: Vec<u8>,
    cut: bool,
    /// Its offset in the file.
    start: u64,
}

/// Reads one file backwards, a line at a time, holding at most [`CHUNK`] + [`MAX_LINE_BYTES`] bytes.
struct Backward {
    file: File,
    /// Everything before this offset is still unread; `carry` starts here.
    pos: u64,
    /// Bytes read but not yet returned: the end of the line being assembled, of which at most
    /// [`MAX_LINE_BYTES`] from its start are kept.
    carry: Vec<u8>,
    cut: bool,
    done: bool,
}

impl Backward {
    fn open(files: &LogFiles, file: &LogFile) -> io::Result<Self> {
        let handle = File::open(files.dir.join(&file.name))?;
        Ok(Self { file: handle, pos: file.len, carry: Vec::new(), cut: false, done: false })
    }

    /// The previous line (without its newline), or `None` at the start of the file or once the scan budget is
    /// spent.
    fn next_line(&mut self, out: &mut Collected) -> io::Result<Option<BackLine>> {
        loop {
            if let Some(newline) = self.carry.iter().rposition(|b| *b == b'\n') {
                let line = self.carry.split_off(newline + 1);
                self.carry.truncate(newline);
                return Ok(Some(self.finish(line, self.pos + newline as u64 + 1)));
            }
            if self.done {
                return Ok(None);
            }
            if self.pos == 0 {
                self.done = true;
                let line = std::mem::take(&mut self.carry);
                return Ok(Some(self.finish(line, 0)));
            }
            if out.over_scan_budget() {
                // Out of budget in the middle of a line: it is not returned half-read.
                self.done = true;
                return Ok(None);
            }
            let size = CHUNK.min(usize::try_from(self.pos).unwrap_or(CHUNK));
            self.pos -= size as u64;
            let mut chunk = vec![0; size];
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.file.read_exact(&mut chunk)?;
            out.scanned += size as u64;
            chunk.extend_from_slice(&self.carry);
            self.carry = chunk;
            // One line longer than a line may be: keep its start, drop the rest, so memory stays bounded.
            if self.carry.len() > MAX_LINE_BYTES && !self.carry.contains(&b'\n') {
                self.carry.truncate(MAX_LINE_BYTES);
                self.cut = true;
            }
        }
    }

    fn finish(&mut self, mut bytes: Vec<u8>, start: u64) -> BackLine {
        let mut cut = std::mem::take(&mut self.cut);
        if bytes.len() > MAX_LINE_BYTES {
            bytes.truncate(MAX_LINE_BYTES);
            cut = true;
        }
        BackLine { bytes, cut, start }
    }
}

/// The lines after `after`, oldest first: the rest of its file, then each newer file from its start. A file gone
/// (rotated away) or shorter than the position (replaced) is read from the next file or its start, and the answer
/// marked truncated since lines may have been missed.
fn follow(
    files: &LogFiles,
    listed: &[LogFile],
    after: &LogPosition,
    out: &mut Collected,
) -> io::Result<Option<LogPosition>> {
    let (start, mut offset) = match listed.iter().position(|f| f.name == after.file) {
        Some(index) if after.offset <= listed[index].len => (index, after.offset),
        Some(index) => {
            out.truncated = true;
            (index, 0)
        }
        None => {
            out.truncated = true;
            match listed.iter().position(|f| f.name > after.file) {
                Some(index) => (index, 0),
                None if listed.is_empty() => return Ok(None),
                // Only older files than the one named: the position is from elsewhere; continue at the newest.
                None => (listed.len() - 1, listed[listed.len() - 1].len),
            }
        }
    };
    let mut position = LogPosition { file: listed[start].name.clone(), offset };
    for (index, file) in listed.iter().enumerate().skip(start) {
        let newest = index + 1 == listed.len();
        if index != start {
            offset = 0;
        }
        position = LogPosition { file: file.name.clone(), offset };
        let mut reader = BufReader::with_capacity(CHUNK, File::open(files.dir.join(&file.name))?);
        reader.seek(SeekFrom::Start(offset))?;
        // Reads up to the length listed: what is appended meanwhile is the next poll's.
        let mut reader = reader.take(file.len.saturating_sub(offset));
        loop {
            let line = read_line(&mut reader, out)?;
            match line {
                Line::End => break,
                Line::Partial(_) if newest => return Ok(Some(position)),
                Line::OutOfBudget(consumed) => {
                    position.offset += consumed;
                    return Ok(Some(position));
                }
                Line::Partial(line) | Line::Complete(line) => {
                    if !out.push(&line.bytes, line.cut) {
                        return Ok(Some(position));
                    }
                    position.offset += line.consumed;
                }
            }
            if out.over_scan_budget() {
                return Ok(Some(position));
            }
        }
    }
    Ok(Some(position))
}

struct ReadLine {
    bytes: Vec<u8>,
    cut: bool,
    /// Bytes of the file it took, newline included.
    consumed: u64,
}

enum Line {
    Complete(ReadLine),
    /// The end of the readable part came before a newline.
    Partial(ReadLine),
    /// The scan budget ran out inside a line, after this many bytes of it.
    OutOfBudget(u64),
    End,
}

/// Reads one line forwards, keeping at most [`MAX_LINE_BYTES`] of it.
fn read_line(reader: &mut impl BufRead, out: &mut Collected) -> io::Result<Line> {
    let mut line = ReadLine { bytes: Vec::new(), cut: false, consumed: 0 };
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(if line.consumed == 0 { Line::End } else { Line::Partial(line) });
        }
        let (take, complete) = match buffer.iter().position(|b| *b == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (buffer.len(), false),
        };
        let content = &buffer[..if complete { take - 1 } else { take }];
        let room = MAX_LINE_BYTES.saturating_sub(line.bytes.len());
        if content.len() > room {
            line.cut = true;
        }
        line.bytes.extend_from_slice(&content[..content.len().min(room)]);
        reader.consume(take);
        line.consumed += take as u64;
        out.scanned += take as u64;
        if complete {
            return Ok(Line::Complete(line));
        }
        if out.over_scan_budget() {
            return Ok(Line::OutOfBudget(line.consumed));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> (tempfile::TempDir, LogFiles) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let files = LogFiles { dir: dir.path().to_owned(), prefix: "kanade-agent".into(), suffix: "log".into() };
        (dir, files)
    }

    fn ask(files: &LogFiles, request: LogsRequest) -> LogsReply {
        let lines = request.validate().unwrap();
        read(files, &request, lines, "2026-12-01T12:00:00Z".parse().unwrap()).unwrap()
    }

    fn lines(n: u32) -> LogsRequest {
        LogsRequest { lines: Some(n), ..LogsRequest::default() }
    }

    #[test]
    fn the_tail_spans_the_daily_files_newest_last_and_ignores_other_files() {
        let (_dir, files) = dir_with(&[
            ("kanade-agent.2026-11-30.log", "a1\na2\n"),
            ("kanade-agent.2026-12-01.log", "b1\nb2\n"),
            ("other.2026-12-01.log", "x\n"),
            ("kanade-agent.2026-12-01.txt", "y\n"),
        ]);
        let reply = ask(&files, lines(3));
        assert_eq!(reply.lines, ["a2", "b1", "b2"]);
        assert!(!reply.truncated);
        assert_eq!(reply.position, Some(LogPosition { file: "kanade-agent.2026-12-01.log".into(), offset: 6 }));
        assert_eq!(ask(&files, lines(100)).lines, ["a1", "a2", "b1", "b2"]);
    }

    #[test]
    fn a_line_still_being_written_is_left_for_the_next_follow() {
        let (dir, files) = dir_with(&[("kanade-agent.2026-12-01.log", "one\ntw")]);
        let reply = ask(&files, lines(10));
        assert_eq!(reply.lines, ["one"]);
        let position = reply.position.unwrap();
        assert_eq!(position.offset, 4);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("kanade-agent.2026-12-01.log"))
            .unwrap()
            .write_all(b"o\nthree\n")
            .unwrap();
        let next = ask(&files, LogsRequest { after: Some(position), ..lines(10) });
        assert_eq!(next.lines, ["two", "three"]);
        assert_eq!(next.position.unwrap().offset, 14);
    }

    #[test]
    fn follow_moves_on_to_the_next_daily_file() {
        let (_dir, files) =
            dir_with(&[("kanade-agent.2026-11-30.log", "a1\na2\n"), ("kanade-agent.2026-12-01.log", "b1\n")]);
        let after = LogPosition { file: "kanade-agent.2026-11-30.log".into(), offset: 3 };
        let reply = ask(&files, LogsRequest { after: Some(after), ..lines(10) });
        assert_eq!(reply.lines, ["a2", "b1"]);
        assert_eq!(reply.position, Some(LogPosition { file: "kanade-agent.2026-12-01.log".into(), offset: 3 }));
        assert!(!reply.truncated);
        // A position in a file that is gone continues with the next newer one and says lines may be missing.
        let gone = LogPosition { file: "kanade-agent.2026-11-29.log".into(), offset: 99 };
        let reply = ask(&files, LogsRequest { after: Some(gone), ..lines(10) });
        assert_eq!(reply.lines, ["a1", "a2", "b1"]);
        assert!(reply.truncated);
        // A name that is no file of ours reads nothing outside the folder.
        let hostile = LogPosition { file: "../../etc/passwd".into(), offset: 0 };
        let reply = ask(&files, LogsRequest { after: Some(hostile), ..lines(10) });
        assert_eq!(reply.lines, ["a1", "a2", "b1"]);
    }

    #[test]
    fn since_stops_at_the_first_older_line_and_keeps_continuations_with_their_line() {
        let text = "2026-12-01T09:00:00.000000Z  INFO old\n  old continuation\n\
                    2026-12-01T11:30:00.000000Z  INFO recent\n  recent continuation\n\
                    2026-12-01T11:59:00.000000Z  WARN newest\n";
        let (_dir, files) = dir_with(&[("kanade-agent.2026-12-01.log", text)]);
        let reply = ask(&files, LogsRequest { since: Some(Duration::from_secs(3600)), ..lines(100) });
        assert_eq!(
            reply.lines,
            [
                "2026-12-01T11:30:00.000000Z  INFO recent",
                "  recent continuation",
                "2026-12-01T11:59:00.000000Z  WARN newest"
            ]
        );
    }

    #[test]
    fn answers_are_bounded_in_lines_bytes_and_line_length() {
        let many: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let (_dir, files) = dir_with(&[("kanade-agent.log", &many)]);
        let reply = ask(&files, lines(10_000));
        assert_eq!(reply.lines.len(), 10_000);
        assert_eq!(reply.lines.first().unwrap(), "line 10000");
        assert_eq!(reply.lines.last().unwrap(), "line 19999");
        assert!(reply.truncated, "more was there than the most an answer carries");
        let reply = ask(&files, lines(9_999));
        assert_eq!(reply.lines.len(), 9_999);
        assert!(!reply.truncated, "as many lines as were asked for");

        let wide: String = (0..100).map(|i| format!("{i} {}\n", "\u{1}".repeat(8000))).collect();
        let (_dir, files) = dir_with(&[("kanade-agent.log", &wide)]);
        let reply = ask(&files, lines(100));
        assert!(reply.truncated);
        assert!(serde_json::to_vec(&reply).unwrap().len() <= MAX_LOG_REPLY_BYTES, "fits the reply budget");
        assert_eq!(reply.lines.last().unwrap().split(' ').next(), Some("99"));

        let long = format!("start{}\nshort\n", "x".repeat(200_000));
        let (_dir, files) = dir_with(&[("kanade-agent.log", &long)]);
        let reply = ask(&files, lines(10));
        assert_eq!(reply.lines.len(), 2);
        assert!(reply.lines[0].starts_with("startxxx") && reply.lines[0].ends_with(CUT_MARK));
        assert_eq!(reply.lines[0].len(), MAX_LINE_BYTES + CUT_MARK.len());
        assert!(reply.truncated);
        let from_start = LogPosition { file: "kanade-agent.log".into(), offset: 0 };
        let reply = ask(&files, LogsRequest { after: Some(from_start), ..lines(10) });
        assert_eq!(reply.lines.len(), 2);
        assert_eq!(reply.lines[1], "short");
    }

    #[test]
    fn an_empty_folder_answers_no_lines_and_no_position() {
        let (_dir, files) = dir_with(&[]);
        assert_eq!(ask(&files, lines(10)), LogsReply::default());
        let after = LogPosition { file: "kanade-agent.log".into(), offset: 0 };
        assert!(ask(&files, LogsRequest { after: Some(after), ..lines(10) }).position.is_none());
    }
}
