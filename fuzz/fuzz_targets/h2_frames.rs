//! `cargo +nightly fuzz run h2_frames`: the checks are `mosn::fuzzing::h2_frames`, shared with
//! the corpus replay test (`tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mosn::fuzzing::h2_frames(data));
