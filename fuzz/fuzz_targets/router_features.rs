//! The router's feature extractor: any text gives tokens, and hashed features inside the
//! bucket range.
#![no_main]

use kefu_edge::router::features::{hashed_into, tokens};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let t = tokens(text);
    let mut out = Vec::new();
    hashed_into(&t, 1 << 18, &mut out);
    assert!(out.iter().all(|&b| b < 1 << 18));
});
