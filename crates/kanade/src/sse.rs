//! A bounded parser for server-sent events (the `text/event-stream` format of the HTML standard), fed the body of
//! a response chunk by chunk as it arrives.
//!
//! Written here rather than taken from a crate because the stream comes from a server the CLI does not control:
//! the crates looked at buffer a line without limit, and one stops yielding for good (while still buffering) after
//! a single byte that is not UTF-8. This one keeps at most [`SseParser::max_event_bytes`] of a line and of an
//! event, spoils (and reports once) an event that is too long or not UTF-8, and goes on with the next one.
//!
//! What it implements of the standard: lines end with LF, CRLF or a lone CR (also split across chunks); a line
//! starting with `:` is a comment; `field: value` with one optional space after the colon; `event` names the event
//! (`message` when unnamed), `data` lines are joined with LF; an empty line dispatches; an event without data is
//! not dispatched; a leading byte-order mark is dropped. `id` and `retry` are read past (the CLI reconnects on its
//! own terms).

/// One thing the parser found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete event: its name (`message` when the server gave none) and its data.
    Event { name: String, data: String },
    /// A comment line (`: keep-alive`): proof the server is still there, nothing more.
    Comment,
    /// An event left out: one of its lines or the whole of it was longer than the limit, or not UTF-8.
    Spoiled,
}

/// The parser's state between two chunks.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The line being read, without its end.
    line: Vec<u8>,
    /// The current line went over the limit: the rest of it is read past, not kept.
    line_too_long: bool,
    /// The previous chunk ended with CR: an LF starting this one belongs to that line end.
    after_cr: bool,
    /// Nothing has been read yet (a byte-order mark may come first).
    at_start: bool,
    name: String,
    data: String,
    /// The event being built is to be left out when it ends.
    spoiled: bool,
}

impl SseParser {
    /// A parser that keeps at most `max_event_bytes` of one line, and of one event's data.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            line_too_long: false,
            after_cr: false,
            at_start: true,
            name: String::new(),
            data: String::new(),
            spoiled: false,
        }
    }

    /// The limit this parser was made with.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Reads one chunk of the body; appends what it completed to `items`.
    pub fn feed(&mut self, mut chunk: &[u8], items: &mut Vec<SseItem>) {
        if self.at_start && !chunk.is_empty() {
            // The BOM may itself be split over chunks; the first line is then spoiled, which costs nothing real.
            if let Some(rest) = chunk.strip_prefix("\u{feff}".as_bytes()) {
                chunk = rest;
            }
            self.at_start = false;
        }
        for &byte in chunk {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' => self.end_line(items),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(items);
                }
                _ if self.line_too_long => {}
                _ if self.line.len() >= self.max_event_bytes => {
                    self.line_too_long = true;
                    self.line = Vec::new();
                }
                _ => self.line.push(byte),
            }
        }
    }

    fn end_line(&mut self, items: &mut Vec<SseItem>) {
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.line_too_long) {
            self.spoiled = true;
            return;
        }
        if line.is_empty() {
            self.dispatch(items);
            return;
        }
        let Ok(line) = std::str::from_utf8(&line) else {
            self.spoiled = true;
            return;
        };
        if line.starts_with(':') {
            items.push(SseItem::Comment);
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.name),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    self.spoiled = true;
                    self.data = String::new();
                } else if !self.spoiled {
                    self.data.push_str(value);
                    self.data.push('\n');
                }
            }
            // `id`, `retry` and fields the standard does not know are read past.
            _ => {}
        }
    }

    fn dispatch(&mut self, items: &mut Vec<SseItem>) {
        let mut data = std::mem::take(&mut self.data);
        let name = std::mem::take(&mut self.name);
        if std::mem::take(&mut self.spoiled) {
            items.push(SseItem::Spoiled);
            return;
        }
        if data.is_empty() {
            return;
        }
        data.pop();
        let name = if name.is_empty() { "message".to_owned() } else { name };
        items.push(SseItem::Event { name, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseItem {
        SseItem::Event { name: name.into(), data: data.into() }
    }

    /// Feeds `chunks` to a fresh parser with a limit of `max` bytes.
    fn parse(max: usize, chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut parser = SseParser::new(max);
        let mut items = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut items);
        }
        items
    }

    #[test]
    fn events_comments_and_unnamed_events_as_the_backend_sends_them() {
        let body = b": open\n\nevent: state\ndata: {\"state\":\"live\"}\n\n: keep-alive\n\ndata: plain\n\n";
        assert_eq!(
            parse(1024, &[body]),
            vec![SseItem::Comment, event("state", r#"{"state":"live"}"#), SseItem::Comment, event("message", "plain")]
        );
    }

    #[test]
    fn an_event_split_anywhere_over_chunks_is_the_same_event() {
        let body: &[u8] = b"event: host\r\ndata: {\"a\":1}\r\ndata: {\"b\":2}\r\n\r\n";
        let whole = parse(1024, &[body]);
        assert_eq!(whole, vec![event("host", "{\"a\":1}\n{\"b\":2}")]);
        for split in 0..body.len() {
            assert_eq!(parse(1024, &[&body[..split], &body[split..]]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(parse(1024, &bytes), whole, "a byte at a time");
    }

    #[test]
    fn lone_carriage_returns_end_lines_and_a_bom_is_dropped() {
        assert_eq!(parse(1024, &["\u{feff}event: x\rdata:y\r\r".as_bytes()]), vec![event("x", "y")]);
        // A CR at the end of one chunk and an LF at the start of the next are one line end, not two.
        assert_eq!(parse(1024, &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]), vec![event("message", "a\nb")]);
    }

    #[test]
    fn fields_without_a_value_ids_retries_and_unknown_fields_are_read_past() {
        assert_eq!(
            parse(1024, &[b"id: 7\nretry: 10\nwhatever: 1\nevent\ndata\n\nevent: x\n\ndata: after\n\n"]),
            vec![event("message", ""), event("message", "after")],
            "`data` alone is an empty line of data; an event with no data line at all is not dispatched"
        );
    }

    #[test]
    fn an_oversized_line_spoils_its_event_only_and_is_not_kept() {
        let long = vec![b'x'; 10_000];
        let mut parser = SseParser::new(64);
        let mut items = Vec::new();
        parser.feed(b"event: host\ndata: ", &mut items);
        for _ in 0..100 {
            parser.feed(&long, &mut items);
            assert!(parser.line.len() <= 64, "the line is bounded while it is read");
        }
        parser.feed(b"\n\nevent: proc\ndata: ok\n\n", &mut items);
        assert_eq!(items, vec![SseItem::Spoiled, event("proc", "ok")]);
    }

    #[test]
    fn many_short_data_lines_are_bounded_as_one_event() {
        let mut body = Vec::new();
        for _ in 0..100 {
            body.extend_from_slice(b"data: 0123456789\n");
        }
        body.extend_from_slice(b"\ndata: next\n\n");
        assert_eq!(parse(64, &[&body]), vec![SseItem::Spoiled, event("message", "next")]);
    }

    #[test]
    fn bytes_that_are_not_utf8_spoil_one_event_and_the_stream_goes_on() {
        assert_eq!(
            parse(1024, &[b"event: host\ndata: \xff\xfe\n\n", b"event: host\ndata: fine\n\n"]),
            vec![SseItem::Spoiled, event("host", "fine")]
        );
    }

    #[test]
    fn an_unfinished_event_at_the_end_of_the_body_is_not_dispatched() {
        assert_eq!(parse(1024, &[b"event: host\ndata: {\"half\":"]), vec![]);
    }
}
