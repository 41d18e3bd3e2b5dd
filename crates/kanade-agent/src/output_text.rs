//! Turns a run's output bytes into text. Scripts mostly write UTF-8 (the `cmd` wrapper runs `chcp 65001`, and
//! PowerShell is told to), but Windows console tools that ignore the console's code page (ipconfig, net, robocopy,
//! ...) write into a pipe in the system's OEM code page (437, 850, 932, ...), which read as UTF-8 is mojibake.
//!
//! The rule, for each output stream of a run: its bytes are read as UTF-8 until the first read that is not UTF-8
//! (it has an invalid sequence; a character cut by the end of a read waits for the next read instead, and one cut
//! by the end of the stream counts as invalid). From that read on, that read included with any bytes held back from
//! the one before, the stream is read in the fallback code page to its end: the text never goes back to UTF-8 within
//! a run, and what was already passed on stays as it was. Without a fallback (off Windows, where
//! [`crate::platform::oem_code_page`] is `None`, or a code page not known here) invalid bytes become U+FFFD.
//!
//! Code pages: the DOS single-byte ones (437, 850, 852, 866, ...) from `oem_cp`'s tables, the others (932, 936,
//! 949, 950, 874, the Windows ones) by `encoding_rs`, through the `codepage` crate's mapping of their numbers.

use encoding_rs::{CoderResult, Decoder, Encoding};
use oem_cp::code_table::DECODING_TABLE_CP_MAP;
use oem_cp::code_table_type::TableType;

/// Decodes one output stream of one run, read by read ([`OutputDecoder::push`], then [`OutputDecoder::finish`]).
pub struct OutputDecoder {
    mode: Mode,
}

enum Mode {
    /// Still UTF-8: `pending` holds the start of a character cut by the end of the last read; `fallback` is what
    /// the stream turns to at its first read that is not UTF-8 (`None`: it stays lossy UTF-8).
    Utf8 { pending: Vec<u8>, fallback: Option<CodePage> },
    /// Read in a code page, to the end of the stream.
    CodePage(CodePage),
}

/// A decoder for one code page (it keeps a multi-byte character cut between two reads).
enum CodePage {
    SingleByte(TableType),
    MultiByte(Decoder),
}

impl OutputDecoder {
    /// A decoder that falls back to `code_page` (the OEM code page, on Windows) at the first read that is not
    /// UTF-8; with `None`, or a code page not known here, it replaces invalid bytes with U+FFFD instead.
    pub fn new(code_page: Option<u16>) -> Self {
        Self { mode: Mode::Utf8 { pending: Vec::new(), fallback: code_page.and_then(CodePage::new) } }
    }

    /// The text of the next read's `bytes`: all of it, less the start of a character cut at its end, which waits
    /// for the next read.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let (pending, fallback) = match &mut self.mode {
            Mode::CodePage(code_page) => return code_page.decode(bytes, false),
            Mode::Utf8 { pending, fallback } => (pending, fallback),
        };
        pending.extend_from_slice(bytes);
        match std::str::from_utf8(pending) {
            Ok(_) => String::from_utf8(std::mem::take(pending)).unwrap_or_default(),
            Err(err) if err.error_len().is_none() => {
                let rest = pending.split_off(err.valid_up_to());
                String::from_utf8(std::mem::replace(pending, rest)).unwrap_or_default()
            }
            Err(_) => match fallback.take() {
                Some(code_page) => self.switch(code_page, false),
                None => take_lossy(pending),
            },
        }
    }

    /// The text of what is still held back once the stream has ended.
    pub fn finish(mut self) -> String {
        match &mut self.mode {
            Mode::CodePage(code_page) => code_page.decode(&[], true),
            Mode::Utf8 { pending, .. } if pending.is_empty() => String::new(),
            // A character cut by the end of the stream: these bytes are not UTF-8.
            Mode::Utf8 { pending, fallback } => match fallback.take() {
                Some(code_page) => self.switch(code_page, true),
                None => String::from_utf8_lossy(pending).into_owned(),
            },
        }
    }

    /// Turns the stream to `code_page` for good and decodes the bytes held back with it.
    fn switch(&mut self, mut code_page: CodePage, last: bool) -> String {
        let pending = match &mut self.mode {
            Mode::Utf8 { pending, .. } => std::mem::take(pending),
            Mode::CodePage(_) => Vec::new(),
        };
        let text = code_page.decode(&pending, last);
        self.mode = Mode::CodePage(code_page);
        text
    }
}

/// Takes `pending` as UTF-8 with each invalid sequence replaced by U+FFFD (as `String::from_utf8_lossy`), leaving
/// the start of a character cut at its end for the next read.
fn take_lossy(pending: &mut Vec<u8>) -> String {
    let mut text = String::new();
    let mut rest: &[u8] = pending;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                rest = &[];
                break;
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                text.push_str(&String::from_utf8_lossy(valid));
                match err.error_len() {
                    Some(invalid) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[invalid..];
                    }
                    None => {
                        rest = after;
                        break;
                    }
                }
            }
        }
    }
    let kept = pending.len() - rest.len();
    pending.drain(..kept);
    text
}

impl CodePage {
    /// The decoder for the Windows code page `number`, if it is one a console can have and it is known here.
    fn new(number: u16) -> Option<Self> {
        if let Some(table) = DECODING_TABLE_CP_MAP.get(&number) {
            return Some(Self::SingleByte(table.clone()));
        }
        let encoding: &'static Encoding = codepage::to_encoding_no_replacement(number)?;
        // UTF-8 is how the stream was read already; UTF-16 is no console's code page.
        if encoding == encoding_rs::UTF_8 || encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
            return None;
        }
        Some(Self::MultiByte(encoding.new_decoder_without_bom_handling()))
    }

    /// The text of `bytes`; `last`: the stream ends here (a character still cut becomes U+FFFD).
    fn decode(&mut self, bytes: &[u8], last: bool) -> String {
        match self {
            Self::SingleByte(table) => table.decode_string_lossy(bytes),
            Self::MultiByte(decoder) => {
                let mut text = String::new();
                let mut rest = bytes;
                loop {
                    let room = decoder.max_utf8_buffer_length(rest.len()).unwrap_or(rest.len()).max(16);
                    text.reserve(room);
                    let (result, read, _replaced) = decoder.decode_to_string(rest, &mut text, last);
                    rest = &rest[read..];
                    if result == CoderResult::InputEmpty {
                        return text;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text `reads` give, read by read, with the stream's end.
    fn decode(code_page: Option<u16>, reads: &[&[u8]]) -> Vec<String> {
        let mut decoder = OutputDecoder::new(code_page);
        let mut texts: Vec<String> = reads.iter().map(|bytes| decoder.push(bytes)).collect();
        texts.push(decoder.finish());
        texts
    }

    fn joined(code_page: Option<u16>, reads: &[&[u8]]) -> String {
        decode(code_page, reads).concat()
    }

    #[test]
    fn utf8_output_stays_utf8_whatever_the_fallback() {
        let bytes = "Größe ディスク".as_bytes();
        for code_page in [None, Some(437), Some(850), Some(932)] {
            assert_eq!(joined(code_page, &[bytes]), "Größe ディスク", "{code_page:?}");
        }
    }

    #[test]
    fn oem_output_is_read_in_the_oem_code_page() {
        // "Größe" in cp850 (and cp437): ö 0x94, ß 0xE1.
        let grosse: &[u8] = &[0x47, 0x72, 0x94, 0xE1, 0x65];
        assert_eq!(joined(Some(850), &[grosse]), "Größe");
        assert_eq!(joined(Some(437), &[&[0xDA, 0xC4, 0xBF, b' '], grosse, &[b' ', 0xAB]]), "┌─┐ Größe ½");
        // 0x9B is ø in cp850 and ¢ in cp437: the code page given is the one used.
        let storrelse: &[u8] = &[0x53, 0x74, 0x9B, 0x72, 0x72, 0x65, 0x6C, 0x73, 0x65];
        assert_eq!(joined(Some(850), &[storrelse]), "Størrelse");
        assert_eq!(joined(Some(437), &[storrelse]), "St¢rrelse");
        // "ディスク" in cp932 (Shift_JIS), "Диск" in cp866, "磁盘" in cp936 (GBK).
        let disk: &[u8] = &[0x83, 0x66, 0x83, 0x42, 0x83, 0x58, 0x83, 0x4E];
        assert_eq!(joined(Some(932), &[disk]), "ディスク");
        assert_eq!(joined(Some(866), &[&[0x84, 0xA8, 0xE1, 0xAA]]), "Диск");
        assert_eq!(joined(Some(936), &[&[0xB4, 0xC5, 0xC5, 0xCC]]), "磁盘");
    }

    #[test]
    fn a_multibyte_character_split_across_reads_is_decoded_whole() {
        let disk: &[u8] = &[0x83, 0x66, 0x83, 0x42, 0x83, 0x58, 0x83, 0x4E];
        // Cut inside "ィ" (0x83 0x42): the lead byte waits in the decoder.
        assert_eq!(decode(Some(932), &[&disk[..3], &disk[3..]]), ["デ", "ィスク", ""]);
        // Byte by byte.
        let reads: Vec<&[u8]> = disk.chunks(1).collect();
        assert_eq!(joined(Some(932), &reads), "ディスク");
        // A cp932 lead byte that is also a UTF-8 lead byte (0xE8) ends a read: held back as a possible UTF-8
        // character, then decoded in cp932 with the next read ("錢" is 0xE8 0x41).
        assert_eq!(decode(Some(932), &[b"x \xE8", b"\x41 y"]), ["x ", "錢 y", ""]);
        // A UTF-8 character split across reads is still UTF-8.
        let e = "é".as_bytes();
        assert_eq!(decode(Some(850), &[&[b'a', e[0]], &e[1..]]), ["a", "é", ""]);
    }

    #[test]
    fn the_choice_holds_for_the_rest_of_the_run() {
        // UTF-8 first, then the first read that is not: from there on cp850, even for bytes that would be UTF-8.
        let reads: &[&[u8]] = &["héllo ".as_bytes(), &[0x94, b' '], "é".as_bytes()];
        assert_eq!(decode(Some(850), reads), ["héllo ", "ö ", "├®", ""]);
    }

    #[test]
    fn a_character_cut_by_the_end_of_the_stream_is_not_utf8() {
        // 0xC3 starts a UTF-8 character that never comes: cp437's "├".
        assert_eq!(decode(Some(437), &[b"abc\xC3"]), ["abc", "├"]);
        assert_eq!(decode(None, &[b"abc\xC3"]), ["abc", "\u{fffd}"]);
        // A cp932 lead byte at the very end.
        assert_eq!(joined(Some(932), &[&[0x83, 0x66, 0x83]]), "デ\u{fffd}");
    }

    #[test]
    fn without_a_fallback_invalid_bytes_are_replaced_and_split_characters_still_wait() {
        let bytes = "aé".as_bytes();
        assert_eq!(decode(None, &[&bytes[..2], &bytes[2..]]), ["a", "é", ""]);
        assert_eq!(decode(None, &[&[b'a', 0xFF, b'b']]), ["a\u{fffd}b", ""]);
        // An invalid byte and a split character in one read: the byte is replaced, the character waits.
        assert_eq!(decode(None, &[&[0xFF, b'a', bytes[1]], &bytes[2..]]), ["\u{fffd}a", "é", ""]);
        // As String::from_utf8_lossy over the whole, however the bytes are cut.
        let bytes: Vec<u8> = (0..=255u8).chain("ディスク".bytes()).chain([0xF0, 0x9F]).collect();
        for size in [1, 2, 3, 7, 1000] {
            let reads: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(joined(None, &reads), String::from_utf8_lossy(&bytes), "reads of {size}");
        }
    }

    #[test]
    fn code_pages_not_known_here_or_utf8_itself_fall_back_to_replacement() {
        for code_page in [65001, 1200, 12345] {
            assert_eq!(joined(Some(code_page), &[&[b'a', 0x94]]), "a\u{fffd}", "{code_page}");
        }
    }
}
