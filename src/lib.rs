//! # apitap
//!
//! The sensor daemon: command line, the pipeline that drives the capture and parser crates,
//! observations and their redaction, sinks and run summaries.
#![deny(unsafe_code)]

pub mod config;
pub mod engine;
pub mod fanout;
pub mod findings;
pub mod formats;
pub mod infer;
pub mod inspect;
pub mod inventory;
pub mod jsonw;
pub mod kafka;
pub mod metrics;
pub mod observation;
pub mod openapi;
pub mod owners;
pub mod policy;
pub mod privdrop;
pub mod redact;
pub mod run;
pub mod sink;
pub mod spec;

/// mimalloc instead of glibc malloc, for the daemon and everything built on this library (the
/// benches measure what ships): every exchange allocates and frees small strings, and glibc's
/// malloc/free were ~13% of a replay's instructions (callgrind on benches' api-mix capture).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
