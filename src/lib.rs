//! kefu-edge: the edge tier in front of a shop's customer-service bot, on Pingora.
//!
//! Serving: one module per pipeline stage (`edge`, `limits`, `router`, `rules`, `model`,
//! `dialog`, `post`, `upstream`), each usable and testable without the server, over the leaves
//! they share (`intent`, `text`, `template`, `config`); `pipeline` is the decision shared by
//! the server and the CLI; `proxy` and `admin` are the Pingora services that wire the stages
//! to HTTP; `connections` bounds the chat listener's connections before any request is read;
//! `state` holds the compiled configuration and swaps it on reload; `server` builds
//! and runs the Pingora server (and `-t`); `access_log` writes one line per request.
//!
//! Offline: `offline` is everything that runs without the server (training the router,
//! splits, evaluation, export, the CLI's other commands). It may import the serving modules;
//! none of them imports it. `cli` is the command line both share. See DESIGN.md for the
//! contracts.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod connections;
pub mod conversation;
pub mod dialog;
pub mod edge;
pub mod intent;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod offline;
pub mod pipeline;
pub mod post;
pub mod proxy;
pub mod redis_link;
pub mod rollout;
pub mod router;
pub mod rules;
pub mod server;
pub mod signals;
pub mod state;
pub mod template;
pub mod text;
pub mod upstream;
