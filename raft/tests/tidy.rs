//! Architecture invariants of docs/ARCHITECTURE.md, checked as tests (like rust-analyzer's tidy).

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("raft/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&workspace().join(dir), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.clone(),
                std::fs::read_to_string(&p).expect("readable source"),
            )
        })
        .collect()
}

/// Architecture invariant: the scheduling core is pure. It does no I/O, reads no clock, draws no
/// random number, spawns nothing and never awaits, and it iterates no hash map (whose order would
/// differ between replicas).
#[test]
fn scheduling_core_is_pure_and_deterministic() {
    let banned = [
        "tokio",
        "openraft",
        "sled",
        "tonic",
        "async ",
        ".await",
        "std::time",
        "Instant",
        "SystemTime",
        "std::thread",
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "rand::",
        "HashMap",
        "HashSet",
        "println!",
        "eprintln!",
    ];
    let mut files = sources("raft/src/sched");
    assert!(files.len() >= 5, "the core's sources were not found");
    // The ledger beside the core is replicated the same way and bound by the same rules.
    files.extend(sources("raft/src/ledger"));
    for (path, text) in files {
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in banned {
                assert!(
                    !code.contains(word),
                    "{}:{}: the scheduling core must not use `{word}`: pass time in with the command and return decisions as events",
                    path.display(),
                    number + 1
                );
            }
        }
    }
}

/// Architecture invariant: the core's crate depends on nothing that does I/O until the cluster
/// adapters arrive; when they do, they live outside `sched/` (checked above).
#[test]
fn raft_crate_dependencies_are_known() {
    let manifest =
        std::fs::read_to_string(workspace().join("raft/Cargo.toml")).expect("raft/Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table");
    let deps = deps.split("\n[").next().unwrap_or("");
    for line in deps
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    {
        let name = line.split(['=', '.']).next().unwrap_or("").trim();
        let allowed = [
            "serde",
            "bincode",
            "thiserror",
            "openraft",
            "sled",
            "tokio",
            "tonic",
            "prost",
            "tracing",
            "cuttle-proto",
        ];
        assert!(allowed.contains(&name), "raft/Cargo.toml: unexpected dependency {name:?}; update docs/ARCHITECTURE.md and this test");
    }
}

/// Every Rust file says what it owns in a `//!` module doc.
#[test]
fn every_module_has_a_doc() {
    for dir in ["raft", "proto", "node", "ops", "chaos-tests"] {
        for (path, text) in sources(dir) {
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let is_bench_or_test_main = path.components().any(|c| c.as_os_str() == "benches");
            assert!(
                first.starts_with("//!") || is_bench_or_test_main && first.starts_with("//"),
                "{}: start the file with a `//!` doc saying what it owns",
                path.display()
            );
        }
    }
}

/// Small files with one job: split a module before it grows past this.
#[test]
fn no_source_file_is_too_long() {
    const LINES_MAX: usize = 700;
    for dir in [
        "raft/src",
        "proto/src",
        "node/src",
        "ops/src",
        "chaos-tests/src",
    ] {
        for (path, text) in sources(dir) {
            let lines = text.lines().count();
            assert!(
                lines <= LINES_MAX,
                "{} has {lines} lines; split it (limit {LINES_MAX})",
                path.display()
            );
        }
    }
}

/// Tests assert outcomes instead of expecting panics, and none is switched off.
#[test]
fn no_should_panic_or_ignored_tests() {
    for dir in ["raft", "proto", "node", "ops", "chaos-tests"] {
        for (path, text) in sources(dir) {
            if path.ends_with("tidy.rs") {
                continue;
            }
            for word in ["#[should_panic", "#[ignore"] {
                assert!(
                    !text.contains(word),
                    "{}: no `{word}`: assert on the Err instead, or fix the test",
                    path.display()
                );
            }
        }
    }
}

/// Internal path dependencies carry a version, so that the crates can be published together.
#[test]
fn path_dependencies_have_versions() {
    for dir in ["raft", "proto", "node", "ops", "chaos-tests"] {
        let manifest =
            std::fs::read_to_string(workspace().join(dir).join("Cargo.toml")).expect("manifest");
        for line in manifest.lines().filter(|l| l.contains("path = ")) {
            if line.trim_start().starts_with("path") || line.contains("[[") {
                continue;
            }
            assert!(
                line.contains("version"),
                "{dir}/Cargo.toml: `{line}` needs a version"
            );
        }
    }
}
