//! `novanet-cni`: invoked by the container runtime with the CNI
//! environment and the network configuration on stdin; prints the result
//! or the error on stdout (CNI spec).

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        eprintln!("novanet-cni: reading stdin: {e}");
    }
    let out = novanet_cni::run(|k| std::env::var(k).ok(), &stdin);
    if let Some(v) = out.stdout {
        let mut s = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut s, &v);
        let _ = s.write_all(b"\n");
    }
    if out.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
