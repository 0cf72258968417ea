//! Namespaces, links, processes and their cleanup.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A process the lab started, stopped when the lab is dropped.
enum Proc {
    Child(Child),
    /// A daemon that forked; known by its PID file.
    PidFile(PathBuf),
}

/// One test's namespaces, processes and scratch directory.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    procs: Vec<(String, Proc)>,
    dir: PathBuf,
    frr_instances: Vec<String>,
}

/// Runs a command, failing the test with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Polls `probe` every 100 ms until it yields a value, for at most
/// `timeout`; fails the test with `what` and the last observation.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => {
                if std::env::var_os("NOVANET_TRACE_WAITS").is_some() {
                    eprintln!("{:?} {what}", Instant::now() + timeout - end);
                }
                return v;
            }
            Err(last) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the interop tests need root (network namespaces); run them as root as CI does"
    );
}

impl Lab {
    /// A new lab; `name` shows up in namespace names for debugging.
    pub fn new(name: &str) -> Lab {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let short: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).take(6).collect();
        let prefix = format!("nv{}{}{}", std::process::id() % 100_000, n, short);
        let dir = std::env::temp_dir().join("novanet-lab").join(&prefix);
        std::fs::create_dir_all(&dir).expect("lab directory");
        Lab {
            prefix,
            namespaces: Vec::new(),
            procs: Vec::new(),
            dir,
            frr_instances: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of one of this lab's namespaces.
    pub fn ns_name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Creates a namespace with loopback up.
    pub fn add_ns(&mut self, short: &str) -> String {
        let ns = self.ns_name(short);
        run(Command::new("ip").args(["netns", "add", &ns]));
        self.namespaces.push(ns.clone());
        run(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        // IPv6 addresses usable at once (no duplicate address detection).
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ])
            .output();
        ns
    }

    /// Joins two namespaces with a veth pair and addresses both ends
    /// (each address with its prefix length; IPv4 and IPv6 alike).
    pub fn link(&mut self, a: &str, a_if: &str, a_addrs: &[&str], b: &str, b_if: &str, b_addrs: &[&str]) {
        let (na, nb) = (self.ns_name(a), self.ns_name(b));
        run(Command::new("ip").args([
            "link", "add", a_if, "netns", &na, "type", "veth", "peer", "name", b_if, "netns", &nb,
        ]));
        for (ns, ifname, addrs) in [(&na, a_if, a_addrs), (&nb, b_if, b_addrs)] {
            for addr in addrs {
                run(Command::new("ip").args(["-n", ns, "addr", "add", addr, "dev", ifname, "nodad"]));
            }
            run(Command::new("ip").args(["-n", ns, "link", "set", ifname, "up"]));
        }
    }

    /// Creates a bridge in a namespace, with addresses, up.
    pub fn add_bridge(&mut self, ns: &str, name: &str, addrs: &[&str]) {
        let n = self.ns_name(ns);
        run(Command::new("ip").args(["-n", &n, "link", "add", name, "type", "bridge"]));
        for addr in addrs {
            run(Command::new("ip").args(["-n", &n, "addr", "add", addr, "dev", name, "nodad"]));
        }
        run(Command::new("ip").args(["-n", &n, "link", "set", name, "up"]));
    }

    /// Joins namespace `a` to bridge `bridge` of namespace `b` with a veth
    /// pair (`port` is the bridge-side end).
    pub fn link_to_bridge(&mut self, a: &str, a_if: &str, a_addrs: &[&str], b: &str, bridge: &str, port: &str) {
        let (na, nb) = (self.ns_name(a), self.ns_name(b));
        run(Command::new("ip").args([
            "link", "add", a_if, "netns", &na, "type", "veth", "peer", "name", port, "netns", &nb,
        ]));
        for addr in a_addrs {
            run(Command::new("ip").args(["-n", &na, "addr", "add", addr, "dev", a_if, "nodad"]));
        }
        run(Command::new("ip").args(["-n", &na, "link", "set", a_if, "up"]));
        run(Command::new("ip").args(["-n", &nb, "link", "set", port, "master", bridge]));
        run(Command::new("ip").args(["-n", &nb, "link", "set", port, "up"]));
    }

    /// Drops every packet from `source` arriving in namespace `ns` (the link
    /// stays up), until [`Lab::undrop`]. Uses nftables.
    pub fn drop_from(&self, ns: &str, source: &str) {
        self.drop_matching(ns, &["ip", "saddr", source]);
    }

    /// Drops every packet arriving on interface `iface` in namespace `ns`
    /// (a peer behind it gone silent, the link still up).
    pub fn drop_on(&self, ns: &str, iface: &str) {
        self.drop_matching(ns, &["iifname", iface]);
    }

    fn drop_matching(&self, ns: &str, matching: &[&str]) {
        let table = "novanet_test";
        let _ = self.cmd(ns, "nft").args(["add", "table", "inet", table]).output();
        let _ = self
            .cmd(ns, "nft")
            .args([
                "add",
                "chain",
                "inet",
                table,
                "input",
                "{ type filter hook input priority 0 ; }",
            ])
            .output();
        let mut rule = vec!["add", "rule", "inet", table, "input"];
        rule.extend_from_slice(matching);
        rule.push("drop");
        self.exec(ns, "nft", &rule);
    }

    /// Removes every drop rule of [`Lab::drop_from`] in a namespace.
    pub fn undrop(&self, ns: &str) {
        self.exec(ns, "nft", &["delete", "table", "inet", "novanet_test"]);
    }

    /// Turns on IPv4 and IPv6 forwarding in a namespace.
    pub fn forwarding(&self, ns: &str) {
        self.exec(
            ns,
            "sysctl",
            &["-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
        );
    }

    /// A command to run inside a namespace.
    pub fn cmd(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns_name(ns), program]);
        c
    }

    /// Runs a command inside a namespace and returns its stdout.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> String {
        let out = run(self.cmd(ns, program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a long-running process in a namespace, output to a log file.
    pub fn spawn(&mut self, name: &str, ns: &str, program: &str, args: &[&str]) -> PathBuf {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .cmd(ns, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        self.procs.push((name.to_string(), Proc::Child(child)));
        log
    }

    /// Tracks a daemon that forked, by its PID file.
    pub fn track_pid_file(&mut self, name: &str, pid_file: PathBuf) {
        self.procs.push((name.to_string(), Proc::PidFile(pid_file)));
    }

    pub(crate) fn track_frr_instance(&mut self, inst: String) {
        self.frr_instances.push(inst);
    }

    /// PID of a process started with [`Lab::spawn`].
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, p)| match p {
                Proc::Child(c) => Some(c.id()),
                Proc::PidFile(f) => read_pid(f),
            })
    }

    /// Sends a signal to a process the lab started.
    pub fn signal(&self, name: &str, sig: i32) {
        let pid = self.pid(name).unwrap_or_else(|| panic!("no process {name}"));
        // SAFETY: plain kill(2) on a PID this lab started.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }

    /// Whether a spawned process has exited.
    pub fn has_exited(&mut self, name: &str) -> bool {
        match self.procs.iter_mut().rev().find(|(n, _)| n == name) {
            Some((_, Proc::Child(c))) => !matches!(c.try_wait(), Ok(None)),
            Some((_, Proc::PidFile(f))) => read_pid(f).is_none_or(|p| !alive(p)),
            None => true,
        }
    }

    /// Waits (bounded) for a spawned process to exit; returns its status.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> std::process::ExitStatus {
        let i = self.procs.iter().rposition(|(n, _)| n == name).expect("known process");
        let Proc::Child(child) = &mut self.procs[i].1 else {
            panic!("{name} is not a child process")
        };
        wait_until(&format!("{name} to exit"), timeout, || match child.try_wait() {
            Ok(Some(st)) => Ok(st),
            Ok(None) => Err("still running".into()),
            Err(e) => Err(e.to_string()),
        })
    }
}

/// Runs `f` on a thread of its own that has entered namespace `ns` (a full
/// name), e.g. to open sockets there.
pub fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_namespace(&ns);
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Moves the calling thread into network namespace `ns` (a full name).
pub fn enter_namespace(ns: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("namespace file");
    // SAFETY: setns on a namespace file, for this thread only.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn read_pid(f: &Path) -> Option<u32> {
    std::fs::read_to_string(f).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut pids = Vec::new();
        for (_, p) in self.procs.iter_mut().rev() {
            match p {
                Proc::Child(c) => {
                    if matches!(c.try_wait(), Ok(None)) {
                        // SAFETY: kill(2) on our own child.
                        unsafe {
                            libc::kill(c.id() as i32, libc::SIGTERM);
                        }
                        pids.push(c.id());
                    }
                }
                Proc::PidFile(f) => {
                    if let Some(pid) = read_pid(f) {
                        // SAFETY: kill(2) on a daemon this lab started.
                        unsafe {
                            libc::kill(pid as i32, libc::SIGTERM);
                        }
                        pids.push(pid);
                    }
                }
            }
        }
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end && pids.iter().any(|p| alive(*p)) {
            for (_, p) in self.procs.iter_mut() {
                if let Proc::Child(c) = p {
                    let _ = c.try_wait();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in pids.iter().filter(|p| alive(**p)) {
            // SAFETY: kill(2) on a process this lab started.
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
        for (_, p) in self.procs.iter_mut() {
            if let Proc::Child(c) = p {
                let _ = c.wait();
            }
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        for inst in &self.frr_instances {
            let _ = std::fs::remove_dir_all(format!("/var/run/frr/{inst}"));
            let _ = std::fs::remove_dir_all(format!("/etc/frr/{inst}"));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab files kept for inspection: {}", self.dir.display());
        }
    }
}

/// A process's resident memory in KiB (`VmRSS`; 0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
