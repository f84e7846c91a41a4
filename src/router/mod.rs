//! Fast router: decides which intent a message is, cheaply enough to run on every request.
//!
//! Two layers: the operator keyword rules (`keyword`), which win, and a trained fastText-style
//! classifier (`trained`, with its `features`, `corpus`, `fit`, `train`ing and `manifest`). The
//! decision that combines them, with the per-intent thresholds, is in `pipeline`.

pub mod corpus;
pub mod features;
pub mod fit;
mod gate;
pub mod keyword;
pub mod manifest;
pub mod thresholds;
pub mod train;
pub mod trained;

pub use keyword::{KeywordHit, KeywordRouter};
pub use trained::{RouterGuess, RouterModel, TrainedRouter};
