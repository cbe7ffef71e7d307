//! Splitting a `text/event-stream` body into events as it passes by, per the WHATWG HTML "Server-sent
//! events" parsing rules (§9.2.6): lines end in CRLF, LF or CR; a line starting with `:` is a comment; a
//! field is the text before the first `:` and its value the rest, less one leading space; `data` values
//! of one event join with LF; a blank line ends the event; one leading BOM is dropped. Nothing but the
//! `data` field is read, and nothing is buffered: the data is handed on in pieces as it arrives, so an
//! event of any length costs the five bytes of a field name. What the data means is the caller's
//! business (`meter/extract.rs`, `meter/usage_filter.rs`).

/// What the splitter found in the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseItem<'a> {
    /// More of the current event's data (a line feed between two `data` lines comes as its own piece).
    Data(&'a [u8]),
    /// The current event ended; `end` is the offset in the fed slice just after its blank line, and
    /// `has_data` says whether it had a `data` field (an event without one is not dispatched by clients).
    EventEnd { end: usize, has_data: bool },
}

/// Where the splitter is in the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Nothing read on this line yet.
    Start,
    /// Reading a field name (its first `len` bytes are in `name`).
    Name,
    /// In a `data` value, before its first byte (which is dropped if it is a space).
    DataFirst,
    /// In a `data` value.
    Data,
    /// In a comment or a field nobody reads.
    Ignore,
}

/// Longest field name compared: `data`.
const FIELD_NAME_BYTES: usize = 4;

/// The UTF-8 byte order mark, dropped once at the start of the stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An incremental event splitter.
#[derive(Debug, Clone)]
pub struct SseSplitter {
    line: Line,
    name: [u8; FIELD_NAME_BYTES],
    name_len: usize,
    name_fits: bool,
    /// The previous byte was a CR, so an LF now is the same line end.
    after_cr: bool,
    /// Bytes of the BOM matched at the start of the stream (`None` once past it).
    bom: Option<usize>,
    /// The current event has had a `data` line.
    has_data: bool,
    /// The current event has had any line (so the stream is inside an event).
    in_event: bool,
}

impl Default for SseSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl SseSplitter {
    /// A splitter at the start of a stream.
    pub fn new() -> Self {
        SseSplitter {
            line: Line::Start,
            name: [0; FIELD_NAME_BYTES],
            name_len: 0,
            name_fits: true,
            after_cr: false,
            bom: Some(0),
            has_data: false,
            in_event: false,
        }
    }

    /// Whether the stream stopped inside an event (bytes of it read but no blank line yet): that event
    /// is never dispatched.
    pub fn in_event(&self) -> bool {
        self.in_event
    }

    /// Split the next piece of the stream, handing each item to `sink` in order.
    pub fn feed(&mut self, input: &[u8], sink: &mut dyn FnMut(SseItem<'_>)) {
        let mut i = 0;
        while i < input.len() {
            if let Some(k) = self.bom {
                if input[i] == BOM[k] {
                    i += 1;
                    self.bom = (k + 1 < BOM.len()).then_some(k + 1);
                    continue;
                }
                self.bom = None;
                if k > 0 {
                    // Part of a BOM then something else: not a field anybody reads.
                    self.line = Line::Ignore;
                    self.in_event = true;
                }
            }
            let b = input[i];
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    i += 1;
                    continue;
                }
            }
            if self.line == Line::Data && b != b'\n' && b != b'\r' {
                // A run of data bytes, handed on in one piece.
                let run = input[i..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .unwrap_or(input.len() - i);
                sink(SseItem::Data(&input[i..i + run]));
                i += run;
                continue;
            }
            i += 1;
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                self.line_end(i, sink);
                continue;
            }
            match self.line {
                Line::Start => {
                    self.in_event = true;
                    if b == b':' {
                        self.line = Line::Ignore;
                    } else {
                        self.line = Line::Name;
                        self.name_len = 0;
                        self.name_fits = true;
                        self.name_byte(b);
                    }
                }
                Line::Name => {
                    if b == b':' {
                        self.line = if self.is_data() {
                            self.data_line_start(sink);
                            Line::DataFirst
                        } else {
                            Line::Ignore
                        };
                    } else {
                        self.name_byte(b);
                    }
                }
                Line::DataFirst => {
                    self.line = Line::Data;
                    if b != b' ' {
                        sink(SseItem::Data(std::slice::from_ref(&input[i - 1])));
                    }
                }
                Line::Data => unreachable!("handled as a run above"),
                Line::Ignore => {}
            }
        }
    }

    fn name_byte(&mut self, b: u8) {
        if self.name_fits && self.name_len < FIELD_NAME_BYTES {
            self.name[self.name_len] = b;
            self.name_len += 1;
        } else {
            self.name_fits = false;
        }
    }

    fn is_data(&self) -> bool {
        self.name_fits && &self.name[..self.name_len] == b"data"
    }

    /// A `data` line begins: a second one in the same event is joined to the first by a line feed.
    fn data_line_start(&mut self, sink: &mut dyn FnMut(SseItem<'_>)) {
        if self.has_data {
            sink(SseItem::Data(b"\n"));
        }
        self.has_data = true;
    }

    fn line_end(&mut self, end: usize, sink: &mut dyn FnMut(SseItem<'_>)) {
        match self.line {
            Line::Start => {
                // A blank line: the event ends (a blank line outside any event is nothing).
                if self.in_event {
                    sink(SseItem::EventEnd {
                        end,
                        has_data: self.has_data,
                    });
                }
                self.has_data = false;
                self.in_event = false;
            }
            // A line that is only a field name has an empty value (`data` alone adds an empty line).
            Line::Name if self.is_data() => self.data_line_start(sink),
            _ => {}
        }
        self.line = Line::Start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events as (data, has_data, end offset in the whole input), from the input fed in `pieces`.
    fn split(pieces: &[&[u8]]) -> (Vec<(String, bool, usize)>, bool) {
        let mut s = SseSplitter::new();
        let mut events = Vec::new();
        let mut data = Vec::new();
        let mut base = 0;
        for p in pieces {
            s.feed(p, &mut |item| match item {
                SseItem::Data(d) => data.extend_from_slice(d),
                SseItem::EventEnd { end, has_data } => events.push((
                    String::from_utf8(std::mem::take(&mut data)).unwrap(),
                    has_data,
                    base + end,
                )),
            });
            base += p.len();
        }
        (events, s.in_event())
    }

    fn split_all_ways(stream: &str) -> (Vec<(String, bool, usize)>, bool) {
        let b = stream.as_bytes();
        let whole = split(&[b]);
        for at in 0..=b.len() {
            for at2 in at..=b.len() {
                assert_eq!(
                    split(&[&b[..at], &b[at..at2], &b[at2..]]),
                    whole,
                    "{at} {at2}: {stream:?}"
                );
            }
        }
        whole
    }

    #[test]
    fn events_fields_and_line_ends() {
        let s =
            "data: {\"a\":1}\n\nevent: x\ndata:two\r\ndata:  lines\r\n\r\n: comment\n\ndata\n\n";
        assert_eq!(
            split_all_ways(s),
            (
                vec![
                    ("{\"a\":1}".into(), true, 15),
                    ("two\n lines".into(), true, 49),
                    (String::new(), false, 61),
                    (String::new(), true, 67),
                ],
                false
            )
        );
        // CR alone ends lines; CRLF is one line end, not two.
        assert_eq!(
            split_all_ways("data:a\rdata:b\r\rdata:c\r\n\r\n"),
            (
                vec![("a\nb".into(), true, 15), ("c".into(), true, 24)],
                false
            )
        );
    }

    #[test]
    fn other_fields_and_lookalikes_are_not_data() {
        assert_eq!(
            split_all_ways("datas: x\nDATA: y\ndat: z\n data: w\nid: 1\nretry: 5\n\n").0,
            vec![(String::new(), false, 49)]
        );
        // The colon in a value is text.
        assert_eq!(
            split_all_ways("data: a: b\n\n").0,
            vec![("a: b".into(), true, 12)]
        );
    }

    #[test]
    fn bom_only_at_the_start_and_unfinished_events() {
        assert_eq!(
            split_all_ways("\u{feff}data: x\n\n").0,
            vec![("x".into(), true, 12)]
        );
        assert_eq!(
            split_all_ways("data: x\n\n\u{feff}data: y\n\n").0,
            vec![("x".into(), true, 9), (String::new(), false, 21)]
        );
        assert_eq!(split_all_ways("data: x\n"), (vec![], true));
        assert_eq!(split_all_ways("\n\n\r\n"), (vec![], false));
    }

    #[test]
    fn long_events_cost_nothing() {
        let mut s = SseSplitter::new();
        let mut n = 0usize;
        s.feed(b"data: ", &mut |_| {});
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..64 {
            s.feed(&chunk, &mut |item| {
                if let SseItem::Data(d) = item {
                    n += d.len()
                }
            });
        }
        assert_eq!(n, 64 << 16);
        assert!(std::mem::size_of::<SseSplitter>() <= 64);
    }
}
