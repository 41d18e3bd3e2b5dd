//! The terminal while `kanade top` draws on it: raw mode, the alternate screen and a hidden cursor on the way in,
//! all of it undone on the way out — when the view ends, when it fails, and when the program panics.

use std::io::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, ClearType};
use crossterm::{cursor, execute, queue};

use super::view::{Input, Key, Line};

/// Whether the terminal is ours now (so the panic hook knows there is something to undo).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// The terminal, taken over until dropped.
pub struct Screen {
    /// Headings in reverse video; off with `NO_COLOR`, for people who want no styling at all.
    styled: bool,
}

impl Screen {
    /// Takes the terminal over: raw mode (keys come one by one, not echoed), the alternate screen (the shell's
    /// screen is back as it was afterwards), no cursor.
    pub fn enter() -> anyhow::Result<Self> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // Restore first, or the panic's message is drawn into the alternate screen and lost with it.
                restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode().map_err(|err| {
            anyhow::Error::new(err)
                .context("cannot take the terminal over (for plain lines, pipe the output or use -o json)")
        })?;
        ACTIVE.store(true, Ordering::SeqCst);
        let screen = Self { styled: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) };
        execute!(std::io::stdout(), terminal::EnterAlternateScreen, cursor::Hide, terminal::Clear(ClearType::All))?;
        Ok(screen)
    }

    /// The terminal's size, columns then rows; 80 by 24 for a terminal that does not say (a pseudo-terminal nobody
    /// gave a size reports 0 by 0).
    pub fn size(&self) -> (u16, u16) {
        match terminal::size() {
            Ok((width, height)) if width > 0 && height > 0 => (width, height),
            _ => (80, 24),
        }
    }

    /// Draws `lines` from the top left, each over what was there, and clears the rest of a screen `height` rows
    /// high.
    pub fn draw(&mut self, lines: &[Line], height: u16) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        queue!(out, terminal::BeginSynchronizedUpdate)?;
        for (row, line) in lines.iter().enumerate() {
            let row = u16::try_from(row).unwrap_or(u16::MAX);
            queue!(out, cursor::MoveTo(0, row))?;
            if line.heading && self.styled {
                queue!(out, SetAttribute(Attribute::Reverse), Print(&line.text), SetAttribute(Attribute::Reset))?;
            } else {
                queue!(out, Print(&line.text))?;
            }
            queue!(out, terminal::Clear(ClearType::UntilNewLine))?;
        }
        // Only when there is a row below: moving past the last row stays on it, and would clear what was drawn there.
        let below = u16::try_from(lines.len()).unwrap_or(u16::MAX);
        if below < height {
            queue!(out, cursor::MoveTo(0, below), terminal::Clear(ClearType::FromCursorDown))?;
        }
        queue!(out, terminal::EndSynchronizedUpdate)?;
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back as it was: the shell's screen, the cursor, cooked mode. Does nothing the second time.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ =
            execute!(std::io::stdout(), SetAttribute(Attribute::Reset), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// A terminal event as the view's input; `None` for what the view does not react to (mouse, focus, paste, key
/// releases).
pub fn input(event: &Event) -> Option<Input> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => Some(Input::Key(match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Key::CtrlC,
            KeyCode::Char(c) if !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => Key::Char(c),
            _ => Key::Other,
        })),
        Event::Resize(..) => Some(Input::Resize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyEvent;

    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Option<Input> {
        input(&Event::Key(KeyEvent::new(code, modifiers)))
    }

    #[test]
    fn keys_become_the_views_keys() {
        assert!(matches!(key(KeyCode::Char('q'), KeyModifiers::NONE), Some(Input::Key(Key::Char('q')))));
        assert!(matches!(key(KeyCode::Char('M'), KeyModifiers::SHIFT), Some(Input::Key(Key::Char('M')))));
        assert!(matches!(key(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Input::Key(Key::CtrlC))));
        assert!(matches!(key(KeyCode::Char('m'), KeyModifiers::ALT), Some(Input::Key(Key::Other))));
        assert!(matches!(key(KeyCode::F(1), KeyModifiers::NONE), Some(Input::Key(Key::Other))));
        let release = KeyEvent::new_with_kind(KeyCode::Char('q'), KeyModifiers::NONE, KeyEventKind::Release);
        assert!(input(&Event::Key(release)).is_none(), "Windows reports releases too: one press is one key");
        assert!(matches!(input(&Event::Resize(10, 10)), Some(Input::Resize)));
        assert!(input(&Event::FocusGained).is_none());
    }
}
