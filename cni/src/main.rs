//! `novanet-cni`: invoked by the container runtime with the CNI
//! environment and the network configuration on stdin; prints the result
//! or the error on stdout (CNI spec). `novanet-cni install` puts the plugin
//! and its conflist on the node.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("install") {
        return install(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--version") {
        println!("novanet-cni {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
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

/// `novanet-cni install ...` (the DaemonSet's init container).
fn install(args: &[String]) -> ExitCode {
    let install = match novanet_cni::install::Install::from_args(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("novanet-cni install: {e}");
            return ExitCode::from(2);
        }
    };
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("novanet-cni install: cannot find this binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    match install.run(&me) {
        Ok(written) => {
            for p in written {
                println!("installed {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("novanet-cni install: {e}");
            ExitCode::FAILURE
        }
    }
}
