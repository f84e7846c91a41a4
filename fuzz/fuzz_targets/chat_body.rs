//! The chat body parser (`api::parse_chat`): any bytes give a request or an `ApiError` with a
//! 4xx status, and an accepted request respects the caps.
#![no_main]

use kefu_edge::api::{Limits, parse_chat};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_text_chars: 500,
    max_user_id_bytes: 128,
};

fuzz_target!(|data: &[u8]| {
    match parse_chat(data, LIMITS) {
        Ok(req) => {
            assert!(req.text.chars().count() <= LIMITS.max_text_chars);
            assert!(req.user_id.len() <= LIMITS.max_user_id_bytes);
        }
        Err(e) => assert!((400..500).contains(&e.status), "{}", e.status),
    }
});
