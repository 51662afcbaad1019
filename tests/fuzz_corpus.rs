//! Replays the fuzz corpus: every file under `fuzz/corpus/<target>/` (the seeds built from
//! valid frames by `fuzz/make_corpus.py`) and `fuzz/artifacts/<target>/` (reproducers of
//! crashes the fuzzer found, kept once fixed) goes through the same `mosn::fuzzing` function
//! as the cargo-fuzz target `<target>`, so CI checks every decoder against them without a
//! nightly toolchain. Each file runs on its own; a failure names the file.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mosn::fuzzing;

/// Fewest seeds a target's corpus may have: the test must not pass on an empty directory.
const MIN_SEEDS: usize = 10;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = fuzz_dir();
    let seeds = files(&fuzz.join("corpus").join(target));
    assert!(
        seeds.len() >= MIN_SEEDS,
        "fuzz/corpus/{target} has {} files, want at least {MIN_SEEDS} (run fuzz/make_corpus.py)",
        seeds.len()
    );
    let artifacts = files(&fuzz.join("artifacts").join(target));
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&artifacts) {
        let data = std::fs::read(path).expect("read a corpus file");
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let why = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failed.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} files failed (reproduce one with \
         `cargo +nightly fuzz run {target} <file>` in fuzz/):\n{}",
        failed.len(),
        seeds.len() + artifacts.len(),
        failed.join("\n")
    );
    eprintln!(
        "{target}: {} seeds and {} artifacts replayed",
        seeds.len(),
        artifacts.len()
    );
}

#[test]
fn bolt_decode() {
    replay("bolt_decode", fuzzing::bolt);
}

#[test]
fn dubbo_decode() {
    replay("dubbo_decode", fuzzing::dubbo);
}

#[test]
fn http1_request() {
    replay("http1_request", fuzzing::http1_request);
}

#[test]
fn http1_response() {
    replay("http1_response", fuzzing::http1_response);
}

#[test]
fn detect() {
    replay("detect", fuzzing::detect);
}

#[test]
fn h2_frames() {
    replay("h2_frames", fuzzing::h2_frames);
}

#[test]
fn client_hello() {
    replay("client_hello", fuzzing::client_hello);
}
