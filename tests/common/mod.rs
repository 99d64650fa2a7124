//! Helpers shared by the integration tests (`mod common;`).
#![allow(dead_code)]

pub mod impair;
pub mod outputs;
pub mod scratch;
