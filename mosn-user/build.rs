//! Embeds the kernel object built by `cargo xtask build-ebpf`.
//!
//! The BPF toolchain (nightly + rust-src + bpf-linker) is not needed for a plain `cargo build`:
//! when the object is absent an empty file is embedded and the daemon runs the userspace path,
//! saying so once at warn level. `MOSN_BPF_OBJECT` overrides the object's path.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let default =
        manifest.join("../mosn-ebpf/programs/target/bpfel-unknown-none/release/mosn-ebpf");
    let src = std::env::var_os("MOSN_BPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-env-changed=MOSN_BPF_OBJECT");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("mosn-ebpf.o");
    match std::fs::read(&src) {
        Ok(bytes) => std::fs::write(&out, bytes).unwrap(),
        Err(_) => {
            println!(
                "cargo:warning=BPF object {} not found: embedding none, the kernel fast path will be unavailable (run `cargo xtask build` to build it)",
                src.display()
            );
            std::fs::write(&out, b"").unwrap();
        }
    }
}
