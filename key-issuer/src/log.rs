//! The process's own logging.
//!
//! The hyperapp macro installs process_lib's tracing subscriber unless `#[init]` calls a function
//! named `init_logging`. That subscriber writes the framework's debug lines, which include raw
//! request bodies (an added API key, the admin key) and cost a VFS round-trip per line. This
//! process therefore logs only through [`info`] / [`warn`], whose callers never pass a secret.

use std::sync::atomic::{AtomicBool, Ordering};

static STARTED: AtomicBool = AtomicBool::new(false);

/// Marks logging as set up: terminal lines only, no framework subscriber.
pub fn init_logging() {
    STARTED.store(true, Ordering::Relaxed);
}

pub fn info(line: &str) {
    hyperware_process_lib::print_to_terminal(1, &format!("key-issuer: {line}"));
}

pub fn warn(line: &str) {
    hyperware_process_lib::print_to_terminal(0, &format!("key-issuer: warning: {line}"));
}
