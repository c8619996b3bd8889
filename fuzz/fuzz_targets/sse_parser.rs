//! The SSE parser and encoder (`switchboard_transport::sse`) on arbitrary bytes. The parser
//! must never panic, must respect its event-size limit, and must parse the same events however
//! the input is split into chunks; any event name and data the encoder writes must parse back
//! as exactly that one event (line endings in the data normalised to `\n`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_transport::sse::{SseEvent, SseParser, encode_event};

const LIMIT: usize = 4096;

fn parse(chunks: &[&[u8]], limit: usize) -> Result<Vec<SseEvent>, ()> {
    let mut parser = SseParser::new(limit);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut out).map_err(|_| ())?;
    }
    Ok(out)
}

/// Encodes `text` (an event name before the first `\x01`, if any, then the data) and parses it.
fn assert_round_trip(text: &str) {
    let (event, data) = match text.split_once('\x01') {
        Some((event, data)) => (Some(event), data),
        None => (None, text),
    };
    let encoded = encode_event(event, data);
    let events = parse(&[encoded.as_bytes()], usize::MAX).expect("no limit");
    let expected = SseEvent {
        event: event
            .map(|e| e.replace(['\r', '\n'], ""))
            .filter(|e| !e.is_empty()),
        data: data.replace("\r\n", "\n").replace('\r', "\n"),
        id: None,
        retry: None,
    };
    assert_eq!(events, vec![expected], "{encoded:?}");
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a split point for the rest.
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let at = if body.is_empty() {
        0
    } else {
        split as usize % body.len()
    };
    let whole = parse(&[body], LIMIT);
    let split = parse(&[&body[..at], &body[at..]], LIMIT);
    let bytewise: Vec<&[u8]> = body.chunks(1).collect();
    let bytewise = parse(&bytewise, LIMIT);
    if let Ok(events) = &whole {
        for event in events {
            // Every byte of an event's lines counts against the limit; an invalid UTF-8 byte
            // becomes U+FFFD (3 bytes), so no field can exceed three times the limit.
            assert!(event.data.len() <= 3 * LIMIT, "data beyond the limit");
            assert!(event.event.as_ref().is_none_or(|e| e.len() <= 3 * LIMIT));
            assert!(event.id.as_ref().is_none_or(|id| id.len() <= 3 * LIMIT));
        }
    }
    // Chunking must not change the outcome.
    assert_eq!(whole, split);
    assert_eq!(whole, bytewise);
    assert_round_trip(&String::from_utf8_lossy(body));
});
