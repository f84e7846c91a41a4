//! kefu-edge: the edge tier in front of a shop's customer-service bot, on Pingora.
//!
//! One module per pipeline stage (`edge`, `limits`, `router`, `rules`, `model`, `post`), each usable
//! and testable without the server; `pipeline` is the decision shared by the server and the
//! CLI; `proxy` and `admin` are the Pingora services that wire the stages to HTTP; `state`
//! holds the compiled configuration and swaps it on reload. See DESIGN.md for the contracts.

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod dialog;
pub mod edge;
pub mod eval;
pub mod intent;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod post;
pub mod proxy;
pub mod router;
pub mod rules;
pub mod signals;
pub mod state;
pub mod text;
