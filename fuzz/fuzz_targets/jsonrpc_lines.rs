//! rmcp's newline-delimited JSON-RPC framing (what a stdio upstream sends us) on arbitrary
//! bytes: decoding, with and without a line-length limit, must never panic or loop.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::async_rw::JsonRpcMessageCodec,
};
use tokio_util::codec::Decoder;

fn drain<T: serde::de::DeserializeOwned>(mut codec: JsonRpcMessageCodec<T>, data: &[u8]) {
    let mut buf = BytesMut::from(data);
    // Each successful decode consumes input, so this terminates; the bound is a backstop.
    for _ in 0..=data.len() {
        match codec.decode(&mut buf) {
            Ok(Some(_)) | Err(_) => continue,
            Ok(None) => break,
        }
    }
    let _ = codec.decode_eof(&mut buf);
}

fuzz_target!(|data: &[u8]| {
    drain(JsonRpcMessageCodec::<ServerJsonRpcMessage>::new(), data);
    drain(
        JsonRpcMessageCodec::<ClientJsonRpcMessage>::new_with_max_length(256),
        data,
    );
});
