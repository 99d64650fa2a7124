//! Exchanges compared by what the sensor saw of them, whatever way the frames arrived: the
//! multiset of (protocol, method, request-target, status) of `http_exchange` observations.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;

/// (protocol, method, request-target, status)
pub type Key = (String, String, String, Option<u64>);

/// How many observations carry each key.
pub fn keys(obs: &[Value]) -> BTreeMap<Key, usize> {
    let mut m = BTreeMap::new();
    for o in obs {
        let r = &o["request"];
        let mut target = r["path"].as_str().unwrap_or("").to_string();
        if let Some(q) = r["query"].as_str() {
            target.push('?');
            target.push_str(q);
        }
        let k = (
            o["protocol"].as_str().unwrap_or("?").to_string(),
            r["method"].as_str().unwrap_or("").to_string(),
            target,
            o["response"]["status"].as_u64(),
        );
        *m.entry(k).or_default() += 1;
    }
    m
}
