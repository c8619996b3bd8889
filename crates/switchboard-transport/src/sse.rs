//! A small Server-Sent Events parser and encoder (WHATWG HTML "event stream interpretation").
//!
//! Written here rather than borrowed because both halves of the legacy HTTP+SSE transport
//! need it (the server encodes, the client parses), and the parser sits directly on bytes a
//! remote peer controls: it must bound memory per event, accept every line ending the spec
//! allows (`\r\n`, `\n`, and a lone `\r`, even when split across reads), and never panic.
//! It is fuzzed (`fuzz/fuzz_targets/sse_parser.rs`).

/// One dispatched SSE event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type, `message`. An event that carried
    /// only a `retry:` field (no data) is reported with `Some("")`, so callers that match on
    /// `endpoint`/`message` skip it while still seeing the retry hint.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen (the spec's "last event ID buffer"), if any.
    pub id: Option<String>,
    /// A `retry:` reconnection time in milliseconds, if this event carried one.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// The event type, with the spec's default applied.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// The parser gave up on the stream: an event grew beyond the configured limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event exceeded {limit} bytes")]
pub struct SseTooLarge {
    pub limit: usize,
}

/// An incremental SSE parser: feed it byte chunks as they arrive, collect events.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`; a leading `\n` in the next chunk belongs to it.
    after_cr: bool,
    /// Still looking for a leading UTF-8 BOM (only at the very start of the stream).
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
    /// Bytes accumulated for the current event (line + fields), checked against `max_event`.
    pending: usize,
    max_event: usize,
}

impl SseParser {
    /// A parser that refuses events (data, fields and the line being read) above `max_event`
    /// bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: None,
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
            pending: 0,
            max_event,
        }
    }

    /// Feeds `chunk`, appending every event it completes to `out`.
    ///
    /// After an error the parser's state is unspecified; the caller should drop the stream.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        let mut rest = chunk;
        if self.at_start {
            // The BOM may only be stripped once, and may arrive split across chunks.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let have = self.line.len();
            let take = rest.len().min(BOM.len() - have);
            if BOM[have..have + take] == rest[..take] {
                self.line.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.line.len() < BOM.len() {
                    return Ok(());
                }
                self.line.clear();
            } else {
                // Not a BOM after all: the bytes held back are ordinary line content.
                let held = std::mem::take(&mut self.line);
                self.at_start = false;
                self.push_line_bytes(&held)?;
            }
            self.at_start = false;
        }
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(pos) => {
                    self.push_line_bytes(&rest[..pos])?;
                    self.after_cr = rest[pos] == b'\r';
                    rest = &rest[pos + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, out);
                    self.line = line;
                    self.line.clear();
                }
                None => {
                    self.push_line_bytes(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), SseTooLarge> {
        self.pending = self.pending.saturating_add(bytes.len());
        if self.pending > self.max_event {
            return Err(SseTooLarge {
                limit: self.max_event,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // A comment (keep-alive).
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        // Invalid UTF-8 is replaced, as browsers do, rather than failing the stream.
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = Some(value.into_owned()),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.pending = 0;
        let event = self.event.take();
        let retry = self.retry.take();
        if !self.has_data {
            // No data: nothing is dispatched, but a `retry` still has to reach the caller.
            self.data.clear();
            if retry.is_some() {
                out.push(SseEvent {
                    event: Some(String::new()),
                    data: String::new(),
                    id: self.last_id.clone(),
                    retry,
                });
            }
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event: event.filter(|e| !e.is_empty()),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
            retry,
        });
    }
}

/// Encodes one event. Multi-line data is split into several `data:` lines, so any string
/// round-trips through [`SseParser`] (line endings inside data normalise to `\n`).
pub fn encode_event(event: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.push_str("event: ");
        // A line break would start a new field; an event name never legitimately has one.
        out.extend(event.chars().filter(|c| *c != '\n' && *c != '\r'));
        out.push('\n');
    }
    // Split on every line ending the parser accepts: a lone `\r` left inside a `data:` line
    // would end it there and turn the rest into a field of its own (found by fuzzing).
    let mut rest = data;
    loop {
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        out.push_str("data: ");
        out.push_str(&rest[..end]);
        out.push('\n');
        if end == rest.len() {
            break;
        }
        let ending = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + ending..];
    }
    out.push('\n');
    out
}

/// A keep-alive comment: ignored by every SSE parser, keeps proxies from closing the stream.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).expect("within limit");
        }
        out
    }

    #[test]
    fn basic_events_and_defaults() {
        let events =
            parse_all(&[b"event: endpoint\ndata: /messages?sessionId=ab\n\ndata: {\"a\":1}\n\n"]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type(), "endpoint");
        assert_eq!(events[0].data, "/messages?sessionId=ab");
        assert_eq!(events[1].event_type(), "message");
        assert_eq!(events[1].data, "{\"a\":1}");
    }

    #[test]
    fn every_line_ending_and_split_crlf() {
        let events = parse_all(&[b"data: a\r", b"\ndata: b\rdata: c\n\r", b"\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a\nb\nc");
    }

    #[test]
    fn bom_comments_ids_retry() {
        let events = parse_all(&[b"\xEF\xBB", b"\xBF: hi\nid: 7\nretry: 1500\ndata:x\n\n"]);
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].retry, Some(1500));
        assert_eq!(events[0].data, "x");
    }

    #[test]
    fn retry_without_data_is_reported() {
        let events = parse_all(&[b"id: 1\nretry: 10\n\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].retry, Some(10));
        assert!(events[0].data.is_empty());
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut parser = SseParser::new(8);
        let mut out = Vec::new();
        assert!(parser.feed(b"data: 0123456789\n\n", &mut out).is_err());
    }

    #[test]
    fn encoder_round_trips() {
        let data = "line one\nline two\r\n{\"x\": \"y\"}";
        let encoded = encode_event(Some("message"), data);
        let events = parse_all(&[encoded.as_bytes()]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "line one\nline two\n{\"x\": \"y\"}");
    }

    #[test]
    fn encoder_splits_on_a_lone_carriage_return() {
        // Fuzz finding: `\r` inside data ended the `data:` line, so the rest became fields.
        let data = "a\rb\r\revent: x\rid: 1\r\nc\r";
        let events = parse_all(&[encode_event(None, data).as_bytes()]);
        assert_eq!(
            events,
            vec![SseEvent {
                data: "a\nb\n\nevent: x\nid: 1\nc\n".into(),
                ..SseEvent::default()
            }]
        );
    }

    /// The fuzz target's property on fixed inputs: however the bytes are split, the same
    /// events (or the same refusal) come out.
    #[test]
    fn chunking_never_changes_the_result() {
        let inputs: [&[u8]; 6] = [
            b"\xEF\xBB\xBFdata: a\r\n\r\n",
            b"\xEFdata: not a bom\n\n",
            b"event: x\rdata: 1\r\rid: 9\nretry: 5\n\n: c\n",
            b"data\ndata:\ndata: \n\n",
            b"data: 0123456789abcdef0123456789\n\n",
            b"\r\n\r\r\n\n\rdata: z\r",
        ];
        let run = |chunks: Vec<&[u8]>| {
            let mut parser = SseParser::new(24);
            let mut out = Vec::new();
            for chunk in chunks {
                if parser.feed(chunk, &mut out).is_err() {
                    return None;
                }
            }
            Some(out)
        };
        for input in inputs {
            let whole = run(vec![input]);
            assert_eq!(whole, run(input.chunks(1).collect()), "{input:?}");
            for at in 0..=input.len() {
                assert_eq!(
                    whole,
                    run(vec![&input[..at], &input[at..]]),
                    "{input:?} at {at}"
                );
            }
        }
    }
}
