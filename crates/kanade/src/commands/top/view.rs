//! `kanade top`'s view as pure functions over plain data: [`TopView::apply`] folds one [`Input`] (an event of the
//! live stream, a key, a resize) into the state and says whether to go on; [`TopView::render`] turns the state and
//! the terminal's size into the lines of the screen. The plain and JSON lines printed to a pipe are made here too,
//! so everything a person or a script sees is unit-tested without a terminal or a backend.

use std::collections::VecDeque;

use kanade_shared::api::PerfLiveState;
use kanade_shared::perf::{HostSample, IoScope, ProcRow, ProcSample};
use serde::Serialize;
use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

use crate::output::size;

/// Host samples of CPU kept for the sparkline (two minutes at the shortest interval would be 480; a line is
/// narrower than that anyway).
const CPU_HISTORY: usize = 240;
/// Per-disk lines under the disk total; more disks are summed up in one line.
const DISK_LINES: usize = 4;
/// Lines the per-core figures may take; with more cores than fit, only the busiest core is named.
const CORE_LINES: usize = 2;
/// The narrowest the process name column gets before other columns are dropped to make room.
const NAME_MIN: usize = 12;
/// Process rows printed per process sample to a pipe, unless `--top` says otherwise.
pub const PLAIN_ROWS: usize = 10;
/// What the note under the table says when a platform counts all of a process's I/O.
pub const ALL_IO_NOTE: &str = "read/write count all I/O, not only disk";

/// The order of the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Busiest first (then most memory).
    Cpu,
    /// Most memory first (then busiest).
    Memory,
}

/// One event of the live stream, read and bounded.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// How the stream stands: waiting for the agent, live, or the agent unreachable.
    State(PerfLiveState),
    /// What the agent kept of the last two minutes, once, when the stream opens.
    History {
        samples: Vec<HostSample>,
        processes: Option<ProcSample>,
    },
    /// Boxed, as the process sample: the events go through a channel, and the other inputs are a few bytes.
    Host(Box<HostSample>),
    Proc(Box<ProcSample>),
    /// An event that could not be read (too long, not UTF-8, not the JSON its name promises): left out, counted.
    Malformed,
    /// The connection dropped and is being made again.
    Reconnecting {
        attempt: u32,
        of: u32,
        cause: String,
    },
}

/// A key, as far as `kanade top` tells keys apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    CtrlC,
    Other,
}

/// Everything the view reacts to.
#[derive(Debug)]
pub enum Input {
    Live(LiveEvent),
    Key(Key),
    /// The terminal changed size: draw again.
    Resize,
    /// Ctrl-C or SIGTERM outside raw mode: stop as `q` would.
    Interrupt,
}

/// What to do after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    Quit,
}

/// One line of the screen, and whether it is a heading (drawn in reverse video unless `NO_COLOR` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub heading: bool,
}

impl Line {
    fn plain(text: impl Into<String>) -> Self {
        Self { text: text.into(), heading: false }
    }
}

/// The state of one `kanade top`.
#[derive(Debug, Clone)]
pub struct TopView {
    pc: String,
    state: Option<PerfLiveState>,
    reconnecting: Option<String>,
    host: Option<HostSample>,
    cpu_history: VecDeque<f32>,
    processes: Option<ProcSample>,
    sort: SortKey,
    /// `--top`: at most this many process rows.
    max_rows: Option<usize>,
    /// `--count`: stop after this many live host samples.
    count: Option<u64>,
    hosts: u64,
    malformed: u64,
}

impl TopView {
    pub fn new(pc: &str, sort: SortKey, max_rows: Option<usize>, count: Option<u64>) -> Self {
        Self {
            pc: pc.to_owned(),
            state: None,
            reconnecting: None,
            host: None,
            cpu_history: VecDeque::new(),
            processes: None,
            sort,
            max_rows,
            count,
            hosts: 0,
            malformed: 0,
        }
    }

    pub fn sort(&self) -> SortKey {
        self.sort
    }

    /// Events that could not be read and were left out.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Live host samples seen.
    pub fn hosts(&self) -> u64 {
        self.hosts
    }

    /// Folds one input into the state.
    pub fn apply(&mut self, input: Input) -> Step {
        match input {
            Input::Live(event) => return self.apply_live(event),
            Input::Key(Key::Char('q' | 'Q') | Key::CtrlC) | Input::Interrupt => return Step::Quit,
            Input::Key(Key::Char('c' | 'C')) => self.sort = SortKey::Cpu,
            Input::Key(Key::Char('m' | 'M')) => self.sort = SortKey::Memory,
            Input::Key(_) | Input::Resize => {}
        }
        Step::Continue
    }

    fn apply_live(&mut self, event: LiveEvent) -> Step {
        match event {
            LiveEvent::State(state) => {
                self.state = Some(state);
                self.reconnecting = None;
            }
            LiveEvent::History { samples, processes } => {
                for sample in &samples {
                    self.remember_cpu(sample.cpu_percent);
                }
                if self.host.is_none() {
                    self.host = samples.into_iter().last();
                }
                if self.processes.is_none() {
                    self.processes = processes;
                }
            }
            LiveEvent::Host(sample) => {
                self.remember_cpu(sample.cpu_percent);
                self.host = Some(*sample);
                self.reconnecting = None;
                self.hosts += 1;
                if self.count.is_some_and(|count| self.hosts >= count) {
                    return Step::Quit;
                }
            }
            LiveEvent::Proc(sample) => self.processes = Some(*sample),
            LiveEvent::Malformed => self.malformed += 1,
            LiveEvent::Reconnecting { attempt, of, cause } => {
                self.reconnecting = Some(format!("connection lost ({cause}); reconnecting, try {attempt} of {of}"));
            }
        }
        Step::Continue
    }

    fn remember_cpu(&mut self, cpu: f32) {
        if self.cpu_history.len() == CPU_HISTORY {
            self.cpu_history.pop_front();
        }
        self.cpu_history.push_back(share(cpu));
    }

    /// The screen for a terminal of `width` columns and `height` rows: never more lines than rows, never a line
    /// wider than the terminal, no control character from a sample.
    pub fn render(&self, width: u16, height: u16) -> Vec<Line> {
        let (width, height) = (usize::from(width), usize::from(height));
        let mut lines: Vec<Line> = self.header(width).into_iter().map(Line::plain).collect();
        let footer = self.footer();
        lines.push(Line::plain(""));
        let room = height.saturating_sub(lines.len() + 1 + footer.len());
        let rows = self.max_rows.map_or(room, |max| max.min(room));
        let io = self.processes.as_ref().map_or(IoScope::Disk, |p| p.io);
        let columns = columns(width, io);
        lines.push(Line { text: heading_line(&columns), heading: true });
        match &self.processes {
            None => lines.push(Line::plain("(no process sample yet)")),
            Some(sample) if sample.processes.is_empty() => lines.push(Line::plain("(no processes in the sample)")),
            Some(sample) => {
                let name_width = width.saturating_sub(fixed_width(&columns));
                for row in sorted(&sample.processes, self.sort).into_iter().take(rows) {
                    lines.push(Line::plain(row_line(&columns, row, Some(name_width))));
                }
            }
        }
        // The footer stays at the bottom of the screen; with few rows it is what goes first.
        let filler = height.saturating_sub(lines.len() + footer.len());
        lines.extend(std::iter::repeat_n(Line::plain(""), filler));
        lines.extend(footer.into_iter().map(Line::plain));
        lines.truncate(height);
        for line in &mut lines {
            line.text = fit(&line.text, width);
        }
        lines
    }

    fn status(&self) -> String {
        if let Some(reconnecting) = &self.reconnecting {
            return reconnecting.clone();
        }
        match &self.state {
            None => "connecting".to_owned(),
            Some(state) => match state.state.as_str() {
                "waiting" => "waiting for the agent".to_owned(),
                "live" if state.interval_ms > 0 => format!("live, every {}", interval(state.interval_ms)),
                "unreachable" if state.message.is_empty() => "unreachable: the agent does not answer".to_owned(),
                other if state.message.is_empty() => other.to_owned(),
                other => format!("{other}: {}", state.message),
            },
        }
    }

    fn header(&self, width: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let mut title = format!("kanade top  {}  {}", self.pc, self.status());
        if let Some(host) = &self.host {
            title.push_str(&format!("  at {} UTC", host.at.format("%H:%M:%S")));
        }
        lines.push(title);
        let Some(host) = &self.host else {
            lines.push("(no sample yet)".to_owned());
            return lines;
        };
        let mut cpu = format!("cpu   {:>5.1}%", share(host.cpu_percent));
        if let Some([one, five, fifteen]) = host.load {
            cpu.push_str(&format!("  load {:.2} {:.2} {:.2}", figure(one), figure(five), figure(fifteen)));
        }
        cpu.push_str(&format!("  procs {}  up {}", host.processes, uptime(host.uptime_secs)));
        let room = width.saturating_sub(cpu.width() + 2).min(60);
        if room >= 10 && self.cpu_history.len() > 1 {
            cpu.push_str("  ");
            cpu.push_str(&spark(self.cpu_history.iter().copied(), room));
        }
        lines.push(cpu);
        lines.extend(cores(&host.cores, width));
        let mut memory = format!(
            "mem   {} / {} ({:.1}%)",
            size(host.mem_used_bytes),
            size(host.mem_total_bytes),
            share(host.mem_percent())
        );
        if host.swap_total_bytes > 0 {
            memory.push_str(&format!("  swap {} / {}", size(host.swap_used_bytes), size(host.swap_total_bytes)));
        }
        lines.push(memory);
        lines.push(format!(
            "disk  read {}  write {}",
            rate(host.disk_read_bytes_per_sec()),
            rate(host.disk_write_bytes_per_sec())
        ));
        let disk_width = host.disks.iter().map(|d| d.name.width()).max().unwrap_or(0).min(16);
        let shown = if host.disks.len() > DISK_LINES { DISK_LINES - 1 } else { host.disks.len() };
        for disk in &host.disks[..shown] {
            let name = pad(&fit(&disk.name, disk_width), disk_width, false);
            let (read, write) = (rate(disk.read_bytes_per_sec), rate(disk.write_bytes_per_sec));
            lines.push(format!("  {name}  read {read}  write {write}"));
        }
        if host.disks.len() > shown {
            lines.push(format!("  and {} more disks", host.disks.len() - shown));
        }
        lines.push(format!("net   rx {}  tx {}", rate(host.net_rx_bytes_per_sec()), rate(host.net_tx_bytes_per_sec())));
        if self.malformed > 0 {
            lines.push(format!("skipped {} malformed event(s)", self.malformed));
        }
        lines
    }

    fn footer(&self) -> Vec<String> {
        let mut footer = Vec::new();
        if self.processes.as_ref().is_some_and(|p| p.io == IoScope::AllIo) {
            footer.push(ALL_IO_NOTE.to_owned());
        }
        let sorted = match self.sort {
            SortKey::Cpu => "CPU",
            SortKey::Memory => "memory",
        };
        footer.push(format!("q quit  c sort by CPU  m sort by memory  (sorted by {sorted})"));
        footer
    }
}

/// The processes in the order of `sort`: ties broken by the other figure, then by pid, so the order is stable.
pub fn sorted(rows: &[ProcRow], sort: SortKey) -> Vec<&ProcRow> {
    let mut rows: Vec<&ProcRow> = rows.iter().collect();
    rows.sort_by(|a, b| {
        let cpu = share(b.cpu_percent).total_cmp(&share(a.cpu_percent));
        let memory = b.rss_bytes.cmp(&a.rss_bytes);
        match sort {
            SortKey::Cpu => cpu.then(memory),
            SortKey::Memory => memory.then(cpu),
        }
        .then(a.pid.cmp(&b.pid))
    });
    rows
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Pid,
    User,
    Cpu,
    Memory,
    Read,
    Write,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Self::Pid => "PID",
            Self::User => "USER",
            Self::Cpu => "CPU%",
            Self::Memory => "MEM",
            Self::Read => "READ/S",
            Self::Write => "WRITE/S",
        }
    }

    /// Display width; a cell that is longer is cut.
    fn width(self) -> usize {
        match self {
            Self::Pid => 7,
            Self::User => 12,
            Self::Cpu => 5,
            Self::Memory | Self::Read | Self::Write => 10,
        }
    }

    fn right(self) -> bool {
        self != Self::User
    }

    fn cell(self, row: &ProcRow) -> String {
        let io = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| size(figure(v) as u64));
        match self {
            Self::Pid => row.pid.to_string(),
            Self::User => row.user.clone(),
            Self::Cpu => format!("{:.1}", share(row.cpu_percent)),
            Self::Memory => size(row.rss_bytes),
            Self::Read => io(row.read_bytes_per_sec),
            Self::Write => io(row.write_bytes_per_sec),
        }
    }
}

/// The columns that fit `width` beside a name column of at least [`NAME_MIN`]: the user goes first, then the I/O
/// figures, then memory. No I/O columns where the platform gives no per-process I/O.
fn columns(width: usize, io: IoScope) -> Vec<Column> {
    let mut columns = vec![Column::Pid, Column::User, Column::Cpu, Column::Memory, Column::Read, Column::Write];
    if io == IoScope::None {
        columns.retain(|c| !matches!(c, Column::Read | Column::Write));
    }
    for drop in [Column::User, Column::Write, Column::Read, Column::Memory] {
        if fixed_width(&columns) + NAME_MIN <= width {
            break;
        }
        columns.retain(|c| *c != drop);
    }
    columns
}

/// The width the fixed columns take with a space after each.
fn fixed_width(columns: &[Column]) -> usize {
    columns.iter().map(|c| c.width() + 1).sum()
}

fn heading_line(columns: &[Column]) -> String {
    let mut line: String = columns.iter().map(|c| pad(c.title(), c.width(), c.right()) + " ").collect();
    line.push_str("NAME");
    line
}

/// A process as a line of `columns`, its name cut to `name_width` (not cut when `None`).
fn row_line(columns: &[Column], row: &ProcRow, name_width: Option<usize>) -> String {
    let mut line: String =
        columns.iter().map(|c| pad(&fit(&c.cell(row), c.width()), c.width(), c.right()) + " ").collect();
    let name = if row.name.is_empty() { "?" } else { row.name.as_str() };
    line.push_str(&fit(name, name_width.unwrap_or(usize::MAX)));
    line.trim_end().to_owned()
}

/// Per-core busy time, four columns a core, when they fit in [`CORE_LINES`] lines; otherwise the busiest core.
fn cores(cores: &[f32], width: usize) -> Vec<String> {
    if cores.is_empty() {
        return Vec::new();
    }
    const LEAD: &str = "cores";
    let per_line = width.saturating_sub(LEAD.len()) / 4;
    if per_line == 0 || cores.len() > per_line * CORE_LINES {
        let busiest = cores.iter().copied().map(share).fold(0.0_f32, f32::max);
        return vec![format!("cores {}, busiest {busiest:.0}%", cores.len())];
    }
    cores
        .chunks(per_line)
        .enumerate()
        .map(|(i, chunk)| {
            let lead = if i == 0 { LEAD } else { "     " };
            let figures: String = chunk.iter().map(|c| format!("{:>4.0}", share(*c))).collect();
            format!("{lead}{figures}")
        })
        .collect()
}

/// A sparkline of the last `width` figures (0-100), oldest first.
fn spark(figures: impl DoubleEndedIterator<Item = f32> + ExactSizeIterator, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = figures.len().saturating_sub(width);
    figures.skip(skip).map(|f| BARS[((share(f) / 100.0 * 7.0).round() as usize).min(7)]).collect()
}

/// The one-line summary of a host sample printed to a pipe.
pub fn summary_line(host: &HostSample) -> String {
    let mut line = format!(
        "{} {} cpu {:.1}%",
        host.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host.pc_id,
        share(host.cpu_percent)
    );
    if let Some([one, five, fifteen]) = host.load {
        line.push_str(&format!(" load {:.2} {:.2} {:.2}", figure(one), figure(five), figure(fifteen)));
    }
    line.push_str(&format!(" mem {}/{}", size(host.mem_used_bytes), size(host.mem_total_bytes)));
    if host.swap_total_bytes > 0 {
        line.push_str(&format!(" swap {}/{}", size(host.swap_used_bytes), size(host.swap_total_bytes)));
    }
    line.push_str(&format!(
        " disk r {} w {} net rx {} tx {} procs {} up {}",
        rate(host.disk_read_bytes_per_sec()),
        rate(host.disk_write_bytes_per_sec()),
        rate(host.net_rx_bytes_per_sec()),
        rate(host.net_tx_bytes_per_sec()),
        host.processes,
        uptime(host.uptime_secs),
    ));
    clean(&line)
}

/// The process table of a sample printed to a pipe: the first `rows` in the order of `sort`, names whole.
pub fn table_lines(sample: &ProcSample, sort: SortKey, rows: usize) -> Vec<String> {
    let columns = columns(usize::MAX, sample.io);
    let mut lines = vec![heading_line(&columns)];
    lines.extend(
        sorted(&sample.processes, sort).into_iter().take(rows).map(|row| clean(&row_line(&columns, row, None))),
    );
    lines
}

/// An event as one line of JSON for `-o json`: `{"event": "host", ...the sample}`; a process sample's rows in the
/// order of `sort`, at most `rows` of them. Connection trouble and malformed events are not events of the stream
/// and give no line.
pub fn json_line(event: &LiveEvent, sort: SortKey, rows: Option<usize>) -> Option<String> {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        event: &'a str,
        #[serde(flatten)]
        body: T,
    }
    #[derive(Serialize)]
    struct History<'a> {
        samples: &'a [HostSample],
        processes: Option<ProcSample>,
    }
    let ordered = |sample: &ProcSample| {
        let processes = sorted(&sample.processes, sort).into_iter().take(rows.unwrap_or(usize::MAX)).cloned().collect();
        ProcSample { processes, ..sample.clone() }
    };
    let line = match event {
        LiveEvent::State(state) => serde_json::to_string(&Tagged { event: "state", body: state }),
        LiveEvent::History { samples, processes } => serde_json::to_string(&Tagged {
            event: "history",
            body: History { samples, processes: processes.as_ref().map(ordered) },
        }),
        LiveEvent::Host(sample) => serde_json::to_string(&Tagged { event: "host", body: sample }),
        LiveEvent::Proc(sample) => serde_json::to_string(&Tagged { event: "proc", body: ordered(sample) }),
        LiveEvent::Malformed | LiveEvent::Reconnecting { .. } => return None,
    };
    // The samples are bounded, so every figure is finite and serialising cannot fail; should it, no line.
    line.ok()
}

/// What a state or a reconnection means, for a message on stderr.
pub fn state_note(event: &LiveEvent) -> Option<String> {
    match event {
        LiveEvent::State(state) => Some(match state.state.as_str() {
            "waiting" => "waiting for the agent to stream".to_owned(),
            "live" => format!("live, a sample every {}", interval(state.interval_ms)),
            other if state.message.is_empty() => other.to_owned(),
            other => format!("{other}: {}", clean(&state.message)),
        }),
        LiveEvent::Reconnecting { attempt, of, cause } => {
            Some(format!("warning: connection lost ({cause}); reconnecting, try {attempt} of {of}"))
        }
        _ => None,
    }
}

/// A percentage within 0-100; anything that is not a number is 0.
fn share(value: f32) -> f32 {
    if value.is_finite() { value.clamp(0.0, 100.0) } else { 0.0 }
}

/// A finite, non-negative figure.
fn figure(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 { value } else { 0.0 }
}

/// Bytes per second: `1.5 MiB/s`.
fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", size(figure(bytes_per_sec) as u64))
}

/// `1s`, `500ms`, `2m`.
fn interval(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// `3d 04:05`, `4:05:06`.
fn uptime(secs: u64) -> String {
    let (days, hours, minutes, seconds) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 { format!("{days}d {hours:02}:{minutes:02}") } else { format!("{hours}:{minutes:02}:{seconds:02}") }
}

/// `text` with every control character (an agent's process name could carry terminal escapes) replaced by `?`.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `text` cleaned and cut to `width` display columns, ending in `…` when cut.
fn fit(text: &str, width: usize) -> String {
    let text = clean(text);
    if text.width() <= width {
        return text;
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// `text` padded with spaces to `width` display columns, on the left when `right` aligned.
fn pad(text: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(text.width()));
    if right { format!("{fill}{text}") } else { format!("{text}{fill}") }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use kanade_shared::PcId;
    use kanade_shared::perf::{DiskRate, NetRate};

    use super::*;

    fn pc() -> PcId {
        PcId::new("pc-1").unwrap()
    }

    fn host() -> HostSample {
        HostSample {
            at: Utc.with_ymd_and_hms(2026, 5, 4, 12, 3, 4).unwrap(),
            span_ms: 1000,
            cpu_percent: 37.5,
            cores: vec![12.0, 95.0, 3.0, 40.0],
            load: Some([1.2, 0.8, 0.5]),
            mem_total_bytes: 16 << 30,
            mem_used_bytes: 4 << 30,
            mem_available_bytes: 12 << 30,
            swap_total_bytes: 2 << 30,
            swap_used_bytes: 0,
            disks: vec![DiskRate {
                name: "nvme0n1".into(),
                read_bytes_per_sec: 1_572_864.0,
                write_bytes_per_sec: 307_200.0,
                ..DiskRate::default()
            }],
            nets: vec![NetRate { name: "eth0".into(), rx_bytes_per_sec: 12_288.0, tx_bytes_per_sec: 3072.0 }],
            processes: 312,
            uptime_secs: 3 * 86_400 + 4 * 3600 + 5 * 60,
            ..HostSample::empty(pc())
        }
    }

    fn row(pid: u32, name: &str, cpu: f32, rss: u64) -> ProcRow {
        ProcRow {
            pid,
            name: name.into(),
            user: "root".into(),
            cpu_percent: cpu,
            rss_bytes: rss,
            read_bytes_per_sec: Some(4096.0),
            write_bytes_per_sec: None,
        }
    }

    fn procs(rows: Vec<ProcRow>, io: IoScope) -> ProcSample {
        ProcSample { at: host().at, span_ms: 1000, io, total: 312, processes: rows, ..ProcSample::empty(pc()) }
    }

    fn live(interval_ms: u64) -> LiveEvent {
        LiveEvent::State(PerfLiveState { state: "live".into(), interval_ms, message: String::new() })
    }

    /// A view that has seen a state, a host sample and a process sample.
    fn watching(rows: Vec<ProcRow>, io: IoScope) -> TopView {
        let mut view = TopView::new("pc-1", SortKey::Cpu, None, None);
        view.apply(Input::Live(live(1000)));
        view.apply(Input::Live(LiveEvent::Host(Box::new(host()))));
        view.apply(Input::Live(LiveEvent::Proc(Box::new(procs(rows, io)))));
        view
    }

    fn text(lines: &[Line]) -> String {
        lines.iter().map(|l| format!("{}\n", l.text)).collect()
    }

    /// Every line within the terminal, and never more lines than it has rows.
    fn assert_fits(lines: &[Line], width: u16, height: u16) {
        assert!(lines.len() <= usize::from(height), "{} lines for {height} rows", lines.len());
        for line in lines {
            assert!(line.text.width() <= usize::from(width), "{:?} is wider than {width}", line.text);
            assert!(!line.text.chars().any(char::is_control), "{:?}", line.text);
            assert!(!line.text.contains("NaN") && !line.text.contains("inf"), "{:?}", line.text);
        }
    }

    fn three() -> Vec<ProcRow> {
        vec![row(10, "postgres", 2.0, 900 << 20), row(4242, "burn", 99.5, 1 << 20), row(7, "sshd", 0.0, 8 << 20)]
    }

    #[test]
    fn the_screen_at_eighty_columns() {
        let view = watching(three(), IoScope::Disk);
        let lines = view.render(80, 20);
        assert_fits(&lines, 80, 20);
        insta::assert_snapshot!(text(&lines), @r"
        kanade top  pc-1  live, every 1s  at 12:03:04 UTC
        cpu    37.5%  load 1.20 0.80 0.50  procs 312  up 3d 04:05
        cores  12  95   3  40
        mem   4.0 GiB / 16.0 GiB (25.0%)  swap 0 B / 2.0 GiB
        disk  read 1.5 MiB/s  write 300.0 KiB/s
          nvme0n1  read 1.5 MiB/s  write 300.0 KiB/s
        net   rx 12.0 KiB/s  tx 3.0 KiB/s

            PID USER          CPU%        MEM     READ/S    WRITE/S NAME
           4242 root          99.5    1.0 MiB    4.0 KiB          - burn
             10 root           2.0  900.0 MiB    4.0 KiB          - postgres
              7 root           0.0    8.0 MiB    4.0 KiB          - sshd







        q quit  c sort by CPU  m sort by memory  (sorted by CPU)
        ");
        assert!(lines[8].heading && !lines[9].heading, "the table's heading is marked for reverse video");
    }

    #[test]
    fn keys_sort_by_memory_and_back_and_quit() {
        let mut view = watching(three(), IoScope::Disk);
        assert_eq!(view.apply(Input::Key(Key::Char('m'))), Step::Continue);
        let names: Vec<String> = view.render(80, 20)[9..12].iter().map(|l| l.text.clone()).collect();
        assert!(
            names[0].ends_with("postgres") && names[1].ends_with("sshd") && names[2].ends_with("burn"),
            "{names:?}"
        );
        assert!(view.render(80, 20).last().unwrap().text.ends_with("(sorted by memory)"));
        assert_eq!(view.apply(Input::Key(Key::Char('c'))), Step::Continue);
        assert_eq!(view.sort(), SortKey::Cpu);
        assert_eq!(view.apply(Input::Key(Key::Other)), Step::Continue);
        assert_eq!(view.apply(Input::Resize), Step::Continue);
        for quit in [Input::Key(Key::Char('q')), Input::Key(Key::Char('Q')), Input::Key(Key::CtrlC), Input::Interrupt] {
            assert_eq!(view.clone().apply(quit), Step::Quit);
        }
    }

    #[test]
    fn the_screen_at_forty_columns_drops_columns_and_keeps_the_name() {
        let mut rows = three();
        rows.push(row(1, &"a-very-long-process-name-".repeat(20), 1.0, 0));
        let view = watching(rows, IoScope::AllIo);
        let lines = view.render(40, 24);
        assert_fits(&lines, 40, 24);
        insta::assert_snapshot!(text(&lines), @r"
        kanade top  pc-1  live, every 1s  at 12…
        cpu    37.5%  load 1.20 0.80 0.50  proc…
        cores  12  95   3  40
        mem   4.0 GiB / 16.0 GiB (25.0%)  swap…
        disk  read 1.5 MiB/s  write 300.0 KiB/s
          nvme0n1  read 1.5 MiB/s  write 300.0…
        net   rx 12.0 KiB/s  tx 3.0 KiB/s

            PID  CPU%        MEM NAME
           4242  99.5    1.0 MiB burn
             10   2.0  900.0 MiB postgres
              1   1.0        0 B a-very-long-pr…
              7   0.0    8.0 MiB sshd









        read/write count all I/O, not only disk
        q quit  c sort by CPU  m sort by memory…
        ");
    }

    #[test]
    fn tiny_terminals_get_what_fits_and_nothing_wider() {
        let view = watching(three(), IoScope::Disk);
        for width in 0..=100 {
            for height in 0..=30 {
                assert_fits(&view.render(width, height), width, height);
            }
        }
        assert_eq!(view.render(80, 1).len(), 1);
        assert!(view.render(80, 0).is_empty());
    }

    #[test]
    fn before_any_sample_the_screen_says_it_is_connecting() {
        let view = TopView::new("pc-1", SortKey::Cpu, None, None);
        let lines = view.render(60, 8);
        assert_fits(&lines, 60, 8);
        insta::assert_snapshot!(text(&lines), @r"
        kanade top  pc-1  connecting
        (no sample yet)

            PID  CPU%        MEM     READ/S    WRITE/S NAME
        (no process sample yet)


        q quit  c sort by CPU  m sort by memory  (sorted by CPU)
        ");
    }

    #[test]
    fn zero_processes_and_an_unreachable_agent_are_said_so() {
        let mut view = watching(vec![], IoScope::None);
        view.apply(Input::Live(LiveEvent::State(PerfLiveState {
            state: "unreachable".into(),
            interval_ms: 0,
            message: "no answer from `pc-1`".into(),
        })));
        let lines = view.render(80, 14);
        assert_fits(&lines, 80, 14);
        let screen = text(&lines);
        assert!(screen.starts_with("kanade top  pc-1  unreachable: no answer from `pc-1`"), "{screen}");
        assert!(
            screen.contains("    PID USER          CPU%        MEM NAME\n(no processes in the sample)"),
            "{screen}"
        );
    }

    #[test]
    fn ten_thousand_processes_show_the_busiest_that_fit() {
        let rows: Vec<ProcRow> =
            (0..10_000).map(|i| row(i, &format!("p{i}"), (i % 1000) as f32 / 10.0, u64::from(i))).collect();
        let mut view = watching(rows, IoScope::Disk);
        let lines = view.render(100, 30);
        assert_fits(&lines, 100, 30);
        assert!(lines[9].text.ends_with(" p9999"), "busiest, then most memory: {:?}", lines[9].text);
        let process_rows = |lines: &[Line]| {
            lines
                .iter()
                .filter(|l| {
                    l.text.rsplit(' ').next().is_some_and(|w| {
                        w.starts_with('p') && w.len() > 1 && w[1..].bytes().all(|b| b.is_ascii_digit())
                    })
                })
                .count()
        };
        assert_eq!(process_rows(&lines), 30 - 9 - 1);
        view.max_rows = Some(3);
        assert_eq!(process_rows(&view.render(100, 30)), 3, "--top 3");
    }

    #[test]
    fn figures_that_are_not_numbers_show_as_zero() {
        let mut sample = host();
        sample.cpu_percent = f32::NAN;
        sample.cores = vec![f32::INFINITY, -3.0];
        sample.load = Some([f64::NAN, f64::INFINITY, -1.0]);
        sample.disks[0].read_bytes_per_sec = f64::NAN;
        sample.nets[0].tx_bytes_per_sec = f64::NEG_INFINITY;
        let mut bad = row(1, "x", f32::NAN, 0);
        bad.read_bytes_per_sec = Some(f64::INFINITY);
        let mut view = TopView::new("pc-1", SortKey::Cpu, None, None);
        view.apply(Input::Live(LiveEvent::Host(Box::new(sample.clone()))));
        view.apply(Input::Live(LiveEvent::Host(Box::new(sample.clone()))));
        view.apply(Input::Live(LiveEvent::Proc(Box::new(procs(vec![bad, row(2, "y", 5.0, 0)], IoScope::Disk)))));
        let lines = view.render(120, 30);
        assert_fits(&lines, 120, 30);
        assert!(text(&lines).contains("cpu     0.0%  load 0.00 0.00 0.00"), "{}", text(&lines));
        assert!(!summary_line(&sample).contains("NaN"), "{}", summary_line(&sample));
    }

    #[test]
    fn names_with_escapes_and_wide_characters_are_cleaned_and_cut_by_display_width() {
        let view = watching(vec![row(1, "\u{1b}[2Jevil", 1.0, 0), row(2, &"漢字".repeat(40), 0.5, 0)], IoScope::Disk);
        let lines = view.render(50, 20);
        assert_fits(&lines, 50, 20);
        let screen = text(&lines);
        assert!(screen.contains("?[2Jevil") && !screen.contains('\u{1b}'), "{screen}");
        assert_eq!(fit("漢字漢字", 5), "漢字…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(fit("abc", 3), "abc");
    }

    #[test]
    fn many_cores_are_summed_up_and_a_count_stops_the_view() {
        let mut sample = host();
        sample.cores = (0..128).map(|i| i as f32 / 2.0).collect();
        let mut view = TopView::new("pc-1", SortKey::Cpu, None, Some(2));
        assert_eq!(view.apply(Input::Live(LiveEvent::Host(Box::new(sample.clone())))), Step::Continue);
        assert!(text(&view.render(80, 20)).contains("cores 128, busiest 64%"));
        // History is what happened before: it does not count.
        let history = LiveEvent::History { samples: vec![sample.clone(); 5], processes: None };
        assert_eq!(view.apply(Input::Live(history)), Step::Continue);
        assert_eq!(view.apply(Input::Live(LiveEvent::Malformed)), Step::Continue);
        assert_eq!(view.malformed(), 1);
        assert_eq!(view.apply(Input::Live(LiveEvent::Host(Box::new(sample)))), Step::Quit);
        assert_eq!(view.hosts(), 2);
    }

    #[test]
    fn history_draws_the_view_before_the_first_live_sample() {
        let mut view = TopView::new("pc-1", SortKey::Cpu, None, None);
        let samples: Vec<HostSample> =
            [0.0, 50.0, 100.0, 25.0].iter().map(|cpu| HostSample { cpu_percent: *cpu, ..host() }).collect();
        view.apply(Input::Live(LiveEvent::History { samples, processes: Some(procs(three(), IoScope::Disk)) }));
        let screen = text(&view.render(80, 20));
        assert!(screen.contains("cpu    25.0%") && screen.contains("▁▅█▃"), "{screen}");
        assert!(screen.contains(" burn\n"), "{screen}");
        assert_eq!(view.hosts(), 0);
    }

    #[test]
    fn a_reconnection_shows_in_the_title_until_the_stream_is_back() {
        let mut view = watching(three(), IoScope::Disk);
        let lost = LiveEvent::Reconnecting { attempt: 1, of: 3, cause: "the stream ended".into() };
        view.apply(Input::Live(lost.clone()));
        assert!(view.render(120, 20)[0].text.contains("connection lost (the stream ended); reconnecting, try 1 of 3"));
        view.apply(Input::Live(live(500)));
        assert!(view.render(120, 20)[0].text.contains("live, every 500ms"));
        assert_eq!(state_note(&lost).unwrap(), "warning: connection lost (the stream ended); reconnecting, try 1 of 3");
    }

    #[test]
    fn plain_lines_for_a_pipe() {
        insta::assert_snapshot!(summary_line(&host()), @"2026-05-04T12:03:04Z pc-1 cpu 37.5% load 1.20 0.80 0.50 mem 4.0 GiB/16.0 GiB swap 0 B/2.0 GiB disk r 1.5 MiB/s w 300.0 KiB/s net rx 12.0 KiB/s tx 3.0 KiB/s procs 312 up 3d 04:05");
        let mut rows = three();
        rows[0].name = "a name with spaces and\ta tab".into();
        insta::assert_snapshot!(table_lines(&procs(rows, IoScope::Disk), SortKey::Memory, 2).join("\n"), @r"
            PID USER          CPU%        MEM     READ/S    WRITE/S NAME
             10 root           2.0  900.0 MiB    4.0 KiB          - a name with spaces and?a tab
              7 root           0.0    8.0 MiB    4.0 KiB          - sshd
        ");
    }

    #[test]
    fn json_lines_are_the_samples_tagged_with_their_event() {
        let line = json_line(&LiveEvent::Host(Box::new(host())), SortKey::Cpu, None).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "host");
        assert_eq!(serde_json::from_value::<HostSample>(value).unwrap(), host(), "the rest is the sample as is");
        assert!(line.starts_with(r#"{"event":"host","pc_id":"pc-1","at":"2026-05-04T12:03:04Z""#), "{line}");

        let line =
            json_line(&LiveEvent::Proc(Box::new(procs(three(), IoScope::AllIo))), SortKey::Memory, Some(2)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!((value["event"].as_str(), value["io"].as_str()), (Some("proc"), Some("all_io")));
        let names: Vec<&str> =
            value["processes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["postgres", "sshd"], "sorted by --sort, cut to --top");

        let line = json_line(&live(1000), SortKey::Cpu, None).unwrap();
        assert_eq!(line, r#"{"event":"state","state":"live","interval_ms":1000}"#);
        let history = LiveEvent::History { samples: vec![], processes: None };
        assert_eq!(
            json_line(&history, SortKey::Cpu, None).unwrap(),
            r#"{"event":"history","samples":[],"processes":null}"#
        );
        assert_eq!(json_line(&LiveEvent::Malformed, SortKey::Cpu, None), None);
    }
}
