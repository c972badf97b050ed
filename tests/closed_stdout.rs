//! A closed stdout ends `ftnas` through SIGPIPE, not a panic.
//!
//! This test lives alone in its binary on purpose: while another test thread
//! spawns a process, the forked child briefly holds a copy of every open
//! pipe end (close-on-exec acts only at its exec). If that copy is the read
//! end of this test's pipe, `ftnas` writes into a pipe that still has a
//! reader, succeeds, and exits 0, so the test would fail at random when
//! run beside other spawning tests.

mod common;

use common::s;

/// `ftnas model show ... | head` must end quietly when the reader goes
/// away, not panic on the broken pipe.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_process_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let m = common::repo_file("models/w-ftt-net.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftnas"))
        .args(["model", "show", s(&m)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ftnas");
    // Close the read end before the process gets to print anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for ftnas");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(out.status.signal(), Some(13), "status {:?}", out.status);
}
