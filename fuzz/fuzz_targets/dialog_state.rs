//! The MessagePack dialogue state decoder (what Redis gives back): any bytes decode or fail
//! cleanly, and what decodes encodes back to the same state.
#![no_main]

use kefu_edge::dialog::{DialogState, LatestTurn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = DialogState::decode(data) {
        let mut copy = state.clone();
        let bytes = copy.encode_capped(usize::MAX).expect("encode");
        let again = DialogState::decode(&bytes).expect("decode again");
        assert_eq!(state, again);
    }
    if let Ok(latest) = LatestTurn::decode(data) {
        let again = LatestTurn::decode(&latest.encode().expect("encode")).expect("decode again");
        assert_eq!(latest, again);
    }
});
