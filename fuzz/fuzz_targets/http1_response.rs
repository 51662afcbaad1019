//! `cargo +nightly fuzz run http1_response`: the checks are `mosn::fuzzing::http1_response`, shared with the
//! corpus replay test (`tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mosn::fuzzing::http1_response(data));
