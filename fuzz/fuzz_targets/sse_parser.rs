//! The SSE parser on arbitrary bytes, split into arbitrary chunks: it must never panic, must
//! respect its event-size limit, and must parse the same events however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_transport::sse::{SseEvent, SseParser};

const LIMIT: usize = 4096;

fn parse(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, ()> {
    let mut parser = SseParser::new(LIMIT);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut out).map_err(|_| ())?;
    }
    Ok(out)
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
    let whole = parse(&[body]);
    let split = parse(&[&body[..at], &body[at..]]);
    let bytewise: Vec<&[u8]> = body.chunks(1).collect();
    let bytewise = parse(&bytewise);
    if let Ok(events) = &whole {
        for event in events {
            assert!(event.data.len() <= LIMIT * 4, "data far beyond the limit");
        }
    }
    // Chunking must not change the outcome.
    assert_eq!(whole, split);
    assert_eq!(whole, bytewise);
});
