//! Fast router: decides which intent a message is, cheaply enough to run on every request.
//!
//! Today this is the operator keyword layer; the trained fastText-style classifier joins it
//! here, behind the same decision in `pipeline`, with the keyword layer kept as the override.

mod gate;
pub mod keyword;

pub use keyword::{KeywordHit, KeywordRouter};
