//! The reply filter (normaliser, segmentation, judge and masker) with the shipped word lists:
//! any reply comes back filtered (and a filtered reply can be filtered again) without a
//! panic.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use kefu_edge::config::Config;
use kefu_edge::post::ReplyFilter;
use libfuzzer_sys::fuzz_target;

fn filter() -> &'static ReplyFilter {
    static FILTER: OnceLock<ReplyFilter> = OnceLock::new();
    FILTER.get_or_init(|| {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let config = Config::load_for_training(&conf).expect("shipped conf/");
        ReplyFilter::new(&config.post).expect("reply filter")
    })
}

fuzz_target!(|text: &str| {
    let out = filter().filter(text);
    let _ = filter().filter(&out);
});
