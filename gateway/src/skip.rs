//! One way for a test to say it could not run a check: [`skipped`]. Under CI a skip is a
//! failure; elsewhere the test prints `skipped: WHAT` and, when `tests/run.sh` runs it,
//! appends a line to the file `GATEWAY_SKIP_LOG` names, so the run ends with a summary of every
//! check it did not run instead of a row of silent `ok`s.

use std::io::Write as _;

/// Records that the calling test could not run `what` (say why, and what would make it run).
///
/// # Panics
/// Under `CI=true`, where every check must run.
#[allow(clippy::panic)] // the point of a skip under CI is to fail the test
pub fn skipped(what: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {what}: every check must run under CI");
    }
    eprintln!("skipped: {what}");
    if let Ok(path) = std::env::var("GATEWAY_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}: {what}");
        }
    }
}
