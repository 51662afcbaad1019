//! `cargo +nightly fuzz run detect`: the checks are `mosn::fuzzing::detect`, shared with the
//! corpus replay test (`tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mosn::fuzzing::detect(data));
