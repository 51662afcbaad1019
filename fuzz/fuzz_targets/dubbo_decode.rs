//! `cargo +nightly fuzz run dubbo_decode`: the checks are `mosn::fuzzing::dubbo`, shared with the
//! corpus replay test (`tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mosn::fuzzing::dubbo(data));
