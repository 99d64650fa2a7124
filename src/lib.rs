//! # apitap
//!
//! The sensor daemon: command line, the pipeline that drives the capture and parser crates,
//! observations and their redaction, sinks and run summaries.
#![deny(unsafe_code)]

pub mod engine;
pub mod infer;
pub mod kafka;
pub mod observation;
pub mod redact;
pub mod run;
pub mod sink;
