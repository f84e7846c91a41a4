//! Everything that runs without the server: training the router (`corpus`, `fit`,
//! `thresholds`, `train`, and `teacher` when the served model's view is mixed in), the
//! training/development/test splits and their export, the evaluations (`eval` for messages,
//! `dialogues` for written dialogues, `real_dialogues` for real ones through the answer
//! path), and the CLI's offline commands (`commands`, over the `decider` they share).
//!
//! It sits above the serving modules and may import any of them: training and evaluation
//! score the very `pipeline` the server decides with, so what they report is what the server
//! does. No serving module may import it: what serves a request must not depend on what
//! trains, splits, evaluates or exports, so either side can change without touching the
//! other's code paths.

pub mod commands;
pub mod corpus;
pub mod decider;
pub mod dialogues;
pub mod eval;
pub mod filter_judge;
pub mod fit;
pub mod real_dialogues;
pub mod teacher;
pub mod thresholds;
pub mod train;

pub use commands::run;
