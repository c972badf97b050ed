//! A closed stdout ends `ftnas` through SIGPIPE, not a panic.
//!
//! The read end of `ftnas`'s stdout pipe is closed before `ftnas` starts,
//! so its first write meets a pipe without a reader. (Closing it after the
//! spawn raced with the child: a child that wrote its whole output into the
//! pipe buffer first exited 0.) The test lives alone in its binary so that
//! no other test thread forks while the read end still exists: a forked
//! child holds a copy of every open descriptor until its exec.

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
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_ftnas"))
        .args(["model", "show", s(&m)])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ftnas");
    let out = child.wait_with_output().expect("wait for ftnas");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(out.status.signal(), Some(13), "status {:?}", out.status);
}
