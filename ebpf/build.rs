//! Builds the TC programs (`bpf/*.bpf.c`) with clang for the BPF target;
//! the objects are embedded in the crate.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let src = "bpf/policy.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(out.join("policy.bpf.o"))
        .status()
        .unwrap_or_else(|e| panic!("{clang} (for the BPF programs; Debian package clang): {e}"));
    assert!(
        status.success(),
        "clang could not build {src} (needs the Debian packages clang and libbpf-dev)"
    );
}
