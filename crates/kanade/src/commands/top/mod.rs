//! `kanade top <pc>`: one PC's performance, live, from the backend's event stream (`/api/agents/{pc}/perf/live`).
//!
//! On a terminal it is a full-screen view like top(1), redrawn at each sample, with keys (`q` quits, `c` and `m`
//! sort); to a pipe, or with `-o json`, it prints lines instead and never moves the cursor. What is shown comes
//! from the pure [`view`]; [`live`] reads and keeps up the stream; [`screen`] owns the terminal while it is drawn on.

pub mod live;
pub mod screen;
pub mod view;

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::anyhow;
use futures::StreamExt as _;
use kanade_shared::PcId;
use kanade_shared::perf::IoScope;
use tokio::sync::mpsc;

use self::live::LiveOptions;
use self::screen::Screen;
use self::view::{Input, LiveEvent, SortKey, Step, TopView};
use crate::Cli;
use crate::backend::Backend;
use crate::output::{self, Format};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "On a terminal: a screen redrawn at every sample; keys: q or Ctrl-C quit, c sorts by CPU, m by \
    memory. To a pipe (or with -o csv): a line per host sample and the process table per process sample. With \
    -o json: one JSON object a line per event: {\"event\":\"state\"|\"history\"|\"host\"|\"proc\", ...the \
    event's data}, process rows in the order of --sort.\n\nExit codes: 0 stopped with q, Ctrl-C or after --count \
    samples; 1 the backend refused (no such agent, too many watching it, a bad token), could not be reached, or \
    the stream was lost and did not come back after 3 reconnections (a stream silent for 45 s, without even a \
    keep-alive, counts as lost); 2 bad arguments.\n\nExample: kanade top pc-1 --sort memory"
)]
pub struct TopArgs {
    /// The agent's pc_id.
    pub pc_id: PcId,
    /// The order of the process table (the keys c and m change it while watching).
    #[arg(long, value_enum, default_value_t = SortKey::Cpu)]
    pub sort: SortKey,
    /// Stop after N live host samples [default: until q or Ctrl-C].
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Process rows shown, at most [default: as many as fit the screen; 10 a sample in plain lines; every row the
    /// agent sent with -o json].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=200))]
    pub top: Option<u64>,
}

pub async fn run(cli: &Cli, args: &TopArgs) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    let path = format!("/api/agents/{}/perf/live", args.pc_id);
    // The first connection before anything else: an unknown PC or an unreachable backend is said plainly, on the
    // shell's screen, before the terminal is taken over.
    let first = backend.open_stream(&path).await?;
    let rows = args.top.map(|top| usize::try_from(top).unwrap_or(usize::MAX));
    let mut view = TopView::new(args.pc_id.as_str(), args.sort, rows, args.count);
    let on_screen = cli.output == Format::Table
        && std::io::stdout().is_terminal()
        && std::env::var("TERM").as_deref() != Ok("dumb");

    // The terminal first, so that nothing has been started when it cannot be taken over.
    let mut screen = if on_screen { Some(Screen::enter()?) } else { None };
    let (inputs, mut received) = mpsc::channel::<Input>(64);
    let mut stream = tokio::spawn({
        let inputs = inputs.clone();
        async move { live::follow(&backend, &path, first, &LiveOptions::default(), &inputs).await }
    });
    let signals = tokio::spawn({
        let inputs = inputs.clone();
        async move {
            interrupted().await;
            let _ = inputs.send(Input::Interrupt).await;
        }
    });
    let keys = screen.is_some().then(|| tokio::spawn(read_keys(inputs.clone())));
    drop(inputs);

    let mut printer = Printer { format: cli.output, sort: args.sort, rows, io_noted: false };
    let outcome = loop {
        if let Some(screen) = &mut screen {
            let (width, height) = screen.size();
            if let Err(err) = screen.draw(&view.render(width, height), height) {
                break Err(anyhow::Error::new(err).context("cannot draw on the terminal"));
            }
        }
        let input = tokio::select! {
            biased;
            input = received.recv() => input,
            ended = &mut stream => break Err(match ended {
                Ok(Err(err)) => err,
                Ok(Ok(())) => anyhow!("the live stream ended"),
                Err(err) => anyhow!("the live stream's reader failed: {err}"),
            }),
        };
        let Some(input) = input else { break Ok(()) };
        if screen.is_none()
            && let Input::Live(event) = &input
            && !printer.print(event)
        {
            // The reader of the pipe has gone (`| head`): it has what it wanted.
            break Ok(());
        }
        if view.apply(input) == Step::Quit {
            break Ok(());
        }
    };
    stream.abort();
    signals.abort();
    if let Some(keys) = keys {
        keys.abort();
    }
    // The shell's screen back before any message.
    drop(screen);
    if view.malformed() > 0 {
        output::note(&format!("warning: skipped {} malformed event(s) from the backend", view.malformed()));
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// How events go to a pipe: a summary or a table in plain lines, or a JSON object a line.
struct Printer {
    format: Format,
    sort: SortKey,
    rows: Option<usize>,
    /// The note that a process's read/write counts all I/O has been given (once is enough).
    io_noted: bool,
}

impl Printer {
    /// Prints `event`; false when stdout is closed.
    fn print(&mut self, event: &LiveEvent) -> bool {
        if let LiveEvent::Proc(sample) = event
            && sample.io == IoScope::AllIo
            && self.format != Format::Json
            && !std::mem::replace(&mut self.io_noted, true)
        {
            output::note(&format!("note: {}", view::ALL_IO_NOTE));
        }
        let text = match self.format {
            Format::Json => {
                if let LiveEvent::Reconnecting { .. } = event {
                    output::note(&view::state_note(event).unwrap_or_default());
                }
                view::json_line(event, self.sort, self.rows).map(|line| format!("{line}\n"))
            }
            Format::Table | Format::Csv => match event {
                LiveEvent::Host(sample) => Some(format!("{}\n", view::summary_line(sample))),
                LiveEvent::Proc(sample) => {
                    let lines = view::table_lines(sample, self.sort, self.rows.unwrap_or(view::PLAIN_ROWS));
                    Some(lines.iter().map(|line| format!("{line}\n")).collect::<String>() + "\n")
                }
                other => {
                    if let Some(note) = view::state_note(other) {
                        output::note(&note);
                    }
                    None
                }
            },
        };
        match text {
            Some(text) => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_ok()
            }
            None => true,
        }
    }
}

/// Sends the terminal's keys and resizes to the view until the view is gone or the terminal has no more.
async fn read_keys(inputs: mpsc::Sender<Input>) {
    let mut events = crossterm::event::EventStream::new();
    while let Some(Ok(event)) = events.next().await {
        if let Some(input) = screen::input(&event)
            && inputs.send(input).await.is_err()
        {
            return;
        }
    }
}

/// Ctrl-C, and on Unix SIGTERM and SIGHUP: the end of watching, with the terminal given back. (In raw mode Ctrl-C
/// arrives as a key instead.) A signal that cannot be listened for is never reported, rather than at once.
async fn interrupted() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let unix = |kind: SignalKind| async move {
            match signal(kind) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {}
            () = unix(SignalKind::terminate()) => {}
            () = unix(SignalKind::hangup()) => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
