//! `cargo +nightly fuzz run client_hello`: the checks are `mosn::fuzzing::client_hello`
//! (the TLS ClientHello inspector, `protocol::tls::inspect`), shared with the corpus replay
//! test (`tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mosn::fuzzing::client_hello(data));
