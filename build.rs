//! Records which source tree a binary was built from (the git commit, when
//! built from a clone), so that results written by one build are not mixed
//! with another build's: campaign directories carry it and refuse to resume
//! or merge across builds.

use std::path::Path;
use std::process::Command;

fn main() {
    let git = Path::new(".git");
    // Rebuild the stamp when HEAD moves: HEAD itself, and the branch file it
    // points to (only paths that exist, or cargo would rerun every build).
    let head = git.join("HEAD");
    if head.exists() {
        println!("cargo:rerun-if-changed={}", head.display());
        if let Ok(text) = std::fs::read_to_string(&head) {
            if let Some(reference) = text.trim().strip_prefix("ref: ") {
                let file = git.join(reference);
                if file.exists() {
                    println!("cargo:rerun-if-changed={}", file.display());
                }
            }
        }
        let packed = git.join("packed-refs");
        if packed.exists() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FTNAS_GIT_COMMIT={commit}");
}
