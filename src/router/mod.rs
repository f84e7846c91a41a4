//! Fast router: decides which intent a message is, cheaply enough to run on every request.
//!
//! Two layers: the operator keyword rules (`keyword`), which win, and a trained fastText-style
//! classifier (`trained`, with its `features` and the `manifest` it is checked against). The
//! decision that combines them, with the per-intent thresholds, is in `pipeline`. Training
//! the classifier (corpus, fit, thresholds) is offline work and lives in `crate::offline`.

pub mod features;
mod gate;
pub mod keyword;
pub mod manifest;
pub mod trained;

pub use keyword::{KeywordHit, KeywordRouter};
pub use trained::{RouterGuess, RouterModel, TrainedRouter};
