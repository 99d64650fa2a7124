//! Scratch directories for the integration tests.
//!
//! Every test binary writes under `$TMPDIR/apitap-tests/<kind>-<pid>`. The harness has no global
//! teardown, and a failed test's files are what one reads to debug it, so nothing is deleted when
//! a test ends; instead the first call in each process removes the directories of test processes
//! that are no longer running. Without that, every run left hundreds of megabytes behind (the
//! tunnel test alone writes ~200 MB of wrapped captures) until the disk filled.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Once;

/// `$TMPDIR/apitap-tests/<kind>-<pid>`, created (and emptied when `fresh`).
pub fn dir(kind: &str, fresh: bool) -> PathBuf {
    static SWEEP: Once = Once::new();
    let root = std::env::temp_dir().join("apitap-tests");
    SWEEP.call_once(|| sweep(&root));
    let d = root.join(format!("{kind}-{}", std::process::id()));
    if fresh {
        let _ = std::fs::remove_dir_all(&d);
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes directories whose owning process (the number after the last `-`) is gone.
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
