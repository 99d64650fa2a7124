//! Runs `apitap replay` with every file output in one directory: `events.jsonl`,
//! `inventory.json`, `openapi/` and `stats.json`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `apitap replay PCAP` writing all its file outputs into `dir`, plus `extra` arguments.
pub fn replay_into(dir: &Path, pcap: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("replay")
        .arg(pcap)
        .arg("--output")
        .arg(format!("jsonl:{}", dir.join("events.jsonl").display()))
        .arg("--inventory")
        .arg(dir.join("inventory.json"))
        .arg("--openapi")
        .arg(dir.join("openapi/"))
        .arg("--stats-json")
        .arg(dir.join("stats.json"))
        .args(extra)
        .output()
        .expect("run apitap")
}
