//! Embeds the kernel objects built by `cargo xtask build`: `mosn-ebpf` (sk_skb splicing) and
//! `mosn-capture` (transparent capture).
//!
//! The BPF toolchain (nightly + rust-src + bpf-linker) is not needed for a plain `cargo build`:
//! when an object is absent an empty file is embedded and the daemon runs without that kernel
//! feature, saying so. `MOSN_BPF_OBJECT` and `MOSN_CAPTURE_OBJECT` override the paths.
use std::path::PathBuf;

fn embed(bin: &str, env: &str) {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let default = manifest
        .join("../mosn-ebpf/programs/target/bpfel-unknown-none/release")
        .join(bin);
    let src = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    println!("cargo:rerun-if-env-changed={env}");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(format!("{bin}.o"));
    match std::fs::read(&src) {
        Ok(bytes) => std::fs::write(&out, bytes).unwrap(),
        Err(_) => {
            println!(
                "cargo:warning=BPF object {} not found: embedding none, its kernel feature will be unavailable (run `cargo xtask build` to build it)",
                src.display()
            );
            std::fs::write(&out, b"").unwrap();
        }
    }
}

fn main() {
    embed("mosn-ebpf", "MOSN_BPF_OBJECT");
    embed("mosn-capture", "MOSN_CAPTURE_OBJECT");
}
