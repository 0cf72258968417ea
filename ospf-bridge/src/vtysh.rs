//! Running vtysh against a sidecar's vty sockets (`vtysh --vty_socket
//! DIR`), as a program with arguments, never through a shell. A batch is
//! `configure terminal` and its lines, each its own `-c` argument; FRR
//! reports a refused line with a `%` message, sometimes with exit code 0,
//! so any `%` line fails the batch.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VtyError {
    #[error("vtysh could not run: {0}")]
    Spawn(String),
    #[error("FRR refused the configuration: {0}")]
    Refused(String),
    #[error("FRR's output could not be read: {0}")]
    Unreadable(String),
    #[error("vtysh failed (exit {code:?}): {output}")]
    Failed { code: Option<i32>, output: String },
}

/// A sidecar's vty sockets.
#[derive(Debug, Clone)]
pub struct Vtysh {
    socket_dir: PathBuf,
    program: PathBuf,
}

impl Vtysh {
    /// The sidecar whose daemons listen in `socket_dir` (`routing.frr_socket_dir`).
    pub fn new(socket_dir: &Path) -> Vtysh {
        Vtysh {
            socket_dir: socket_dir.to_path_buf(),
            program: PathBuf::from("vtysh"),
        }
    }

    /// The directory of the daemons' vty sockets.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    fn run(&self, commands: &[String]) -> Result<String, VtyError> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--vty_socket").arg(&self.socket_dir);
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        let out = cmd.output().map_err(|e| VtyError::Spawn(e.to_string()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(refusal) = refusal(&text) {
            return Err(VtyError::Refused(refusal));
        }
        if !out.status.success() {
            return Err(VtyError::Failed {
                code: out.status.code(),
                output: text.trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies configuration lines in one `configure terminal` session.
    pub fn configure(&self, lines: &[String]) -> Result<(), VtyError> {
        let mut all = vec!["configure terminal".to_string()];
        all.extend(lines.iter().cloned());
        self.run(&all).map(|_| ())
    }

    /// A `show` command's output.
    pub fn show(&self, command: &str) -> Result<String, VtyError> {
        self.run(&[command.to_string()])
    }

    /// The running configuration.
    pub fn running_config(&self) -> Result<String, VtyError> {
        self.show("show running-config")
    }
}

/// The `%` lines of vtysh's output (FRR's refusals and warnings).
pub fn refusal(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| l.starts_with('%')).collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// Whether the running configuration holds `lines` (in order, the
/// interface block as FRR writes it back; `exit` lines are FRR's own).
pub fn holds(running: &str, lines: &[String]) -> bool {
    let have: Vec<&str> = running.lines().map(str::trim_end).collect();
    let mut block: Option<&str> = None;
    lines.iter().all(|l| {
        let l = l.trim_end();
        if l == "exit" {
            block = None;
            return true;
        }
        if !l.starts_with(' ') {
            block = Some(l);
            return have.contains(&l);
        }
        match block {
            Some(b) => {
                let start = have.iter().position(|h| *h == b);
                start.is_some_and(|s| have[s + 1..].iter().take_while(|h| h.starts_with(' ')).any(|h| h == &l))
            }
            None => have.contains(&l),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = include_str!("../tests/frr-8.4/running-config.txt");
    const UNKNOWN: &str = include_str!("../tests/frr-8.4/unknown-command.txt");

    #[test]
    fn a_percent_line_is_a_refusal() {
        assert_eq!(refusal(UNKNOWN).as_deref(), Some("% Unknown command:  ip ospf bogus 1"));
        assert_eq!(refusal("Building configuration...\n"), None);
    }

    #[test]
    fn the_running_configuration_is_read_back_block_by_block() {
        let applied: Vec<String> = [
            "interface eth0",
            " ip ospf area 0.0.0.0",
            " ip ospf hello-interval 1",
            " ip ospf dead-interval 3",
            "exit",
        ]
        .map(String::from)
        .to_vec();
        assert!(holds(RUNNING, &applied));
        let other = vec!["interface eth0".to_string(), " ip ospf cost 7".to_string()];
        assert!(!holds(RUNNING, &other));
        let elsewhere = vec!["interface eth1".to_string(), " ip ospf area 0.0.0.0".to_string()];
        assert!(!holds(RUNNING, &elsewhere));
    }
}
