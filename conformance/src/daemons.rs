//! Real BGP daemons as lab peers: FRR bgpd, BIRD 2 and GoBGP, each with a
//! way to ask it about its sessions and routes.

use crate::lab::{run, Lab};
use serde_json::Value;
use std::process::Command;

/// Runs a command; its stdout on success, its output as the error else.
fn output_text(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// An FRR bgpd (with `-Z`: no zebra, no kernel routes) in a namespace.
pub struct Frr {
    pub instance: String,
}

/// Starts one FRR daemon of a lab instance with the configuration file
/// written for it, and tracks its pid file.
fn launch(lab: &mut Lab, ns: &str, instance: &str, daemon: &str, with_zebra: bool) {
    let run_dir = format!("/var/run/frr/{instance}");
    let work = lab.dir().join(format!("frr-{ns}"));
    let conf = work.join(format!("{daemon}.conf"));
    let pid_file = format!("{run_dir}/{daemon}.pid");
    let log = work.join(format!("{daemon}.log"));
    let conf_s = conf.display().to_string();
    let log_s = format!("file:{}", log.display());
    let mut args = vec![
        "-d", "-N", instance, "-u", "frr", "-g", "frr", "-f", &conf_s, "-i", &pid_file, "--log", &log_s,
    ];
    if daemon == "bgpd" && !with_zebra {
        args.push("-Z");
    }
    run(lab.cmd(ns, &format!("/usr/lib/frr/{daemon}")).args(&args));
    lab.track_pid_file(&format!("frr-{ns}-{daemon}"), pid_file.into());
    if daemon == "zebra" {
        let api = format!("{run_dir}/zserv.api");
        crate::wait_until("zebra's API socket", std::time::Duration::from_secs(20), || {
            if std::path::Path::new(&api).exists() {
                Ok(())
            } else {
                Err(api.clone())
            }
        });
    }
}

impl Frr {
    /// Kills one daemon of this instance (SIGKILL, as a crash) and waits
    /// until it is gone.
    pub fn kill_daemon(&self, daemon: &str) {
        let pid_file = format!("/var/run/frr/{}/{daemon}.pid", self.instance);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{pid_file}: no pid"));
        // SAFETY: kill(2) on a daemon this lab started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        crate::wait_until(&format!("{daemon} to exit"), std::time::Duration::from_secs(10), || {
            // SAFETY: signal 0 only asks whether the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                Ok(())
            } else {
                Err(String::new())
            }
        });
        let _ = std::fs::remove_file(pid_file);
    }

    /// Starts a daemon of this instance again with its configuration file
    /// (what it was told at runtime is gone, as after a crash).
    pub fn start_daemon_again(&self, lab: &mut Lab, ns: &str, daemon: &str) {
        launch(lab, ns, &self.instance, daemon, true);
    }

    /// Starts bgpd alone (`-Z`: no zebra, no kernel routes) in `ns` with
    /// `config` (FRR syntax).
    pub fn start(lab: &mut Lab, ns: &str, config: &str) -> Frr {
        Self::start_daemons(lab, ns, &[("bgpd", config)])
    }

    /// Starts several FRR daemons in order (e.g. zebra, bfdd, bgpd), each
    /// with its configuration; bgpd runs with `-Z` unless zebra is among
    /// them.
    pub fn start_daemons(lab: &mut Lab, ns: &str, daemons: &[(&str, &str)]) -> Frr {
        let instance = lab.ns_name(ns);
        let run_dir = format!("/var/run/frr/{instance}");
        let etc_dir = format!("/etc/frr/{instance}");
        let work = lab.dir().join(format!("frr-{ns}"));
        for d in [&run_dir, &etc_dir, &work.display().to_string()] {
            std::fs::create_dir_all(d).expect("FRR directory");
        }
        lab.track_frr_instance(instance.clone());
        std::fs::write(format!("{etc_dir}/vtysh.conf"), "").expect("vtysh.conf");
        let with_zebra = daemons.iter().any(|(d, _)| *d == "zebra");
        for (daemon, config) in daemons {
            let conf = work.join(format!("{daemon}.conf"));
            std::fs::write(&conf, config).expect("FRR config");
            run(Command::new("chown").args(["-R", "frr:frr", &run_dir, &work.display().to_string()]));
            launch(lab, ns, &instance, daemon, with_zebra);
        }
        let frr = Frr { instance };
        if daemons.iter().any(|(d, _)| *d == "bgpd") {
            crate::wait_until("FRR vty to answer", std::time::Duration::from_secs(20), || {
                frr.try_vtysh("show bgp summary json").map(|_| ())
            });
        }
        frr
    }

    pub fn try_vtysh(&self, command: &str) -> Result<String, String> {
        output_text(Command::new("vtysh").args(["-N", &self.instance, "-c", command]))
    }

    pub fn vtysh(&self, command: &str) -> String {
        self.try_vtysh(command)
            .unwrap_or_else(|e| panic!("vtysh {command:?}: {e}"))
    }

    /// Runs configuration lines (`configure terminal` ... ).
    pub fn configure(&self, lines: &[&str]) {
        let mut args = vec![
            "-N".to_string(),
            self.instance.clone(),
            "-c".into(),
            "configure terminal".into(),
        ];
        for l in lines {
            args.push("-c".into());
            args.push((*l).into());
        }
        run(Command::new("vtysh").args(&args));
    }

    pub fn json(&self, command: &str) -> Value {
        serde_json::from_str(&self.vtysh(command)).unwrap_or(Value::Null)
    }

    /// The neighbor's JSON (`show bgp neighbors ADDR json`).
    pub fn neighbor(&self, addr: &str) -> Value {
        self.json(&format!("show bgp neighbors {addr} json"))[addr].clone()
    }

    pub fn neighbor_state(&self, addr: &str) -> String {
        self.neighbor(addr)["bgpState"].as_str().unwrap_or("").to_string()
    }

    /// AS paths of the best path of a prefix, when FRR has it.
    pub fn route_as_path(&self, afi: &str, prefix: &str) -> Option<String> {
        let v = self.json(&format!("show bgp {afi} unicast {prefix} json"));
        let paths = v["paths"].as_array()?;
        paths
            .first()
            .map(|p| p["aspath"]["string"].as_str().unwrap_or("").to_string())
    }
}

/// A BIRD 2 daemon in a namespace.
pub struct Bird {
    socket: String,
}

impl Bird {
    pub fn start(lab: &mut Lab, ns: &str, config: &str) -> Bird {
        let work = lab.dir().join(format!("bird-{ns}"));
        std::fs::create_dir_all(&work).expect("BIRD directory");
        let conf = work.join("bird.conf");
        std::fs::write(&conf, config).expect("bird.conf");
        let socket = work.join("bird.ctl").display().to_string();
        let pid_file = work.join("bird.pid");
        run(lab.cmd(ns, "bird").args([
            "-c",
            &conf.display().to_string(),
            "-s",
            &socket,
            "-P",
            &pid_file.display().to_string(),
        ]));
        lab.track_pid_file(&format!("bird-{ns}"), pid_file);
        let bird = Bird { socket };
        crate::wait_until("BIRD control socket", std::time::Duration::from_secs(20), || {
            bird.try_birdc(&["show", "status"]).map(|_| ())
        });
        bird
    }

    pub fn try_birdc(&self, args: &[&str]) -> Result<String, String> {
        output_text(Command::new("birdc").arg("-s").arg(&self.socket).args(args))
    }

    pub fn birdc(&self, args: &[&str]) -> String {
        self.try_birdc(args).unwrap_or_else(|e| panic!("birdc {args:?}: {e}"))
    }

    /// `BGP state:` of a protocol.
    pub fn bgp_state(&self, protocol: &str) -> String {
        self.birdc(&["show", "protocols", "all", protocol])
            .lines()
            .find_map(|l| l.trim().strip_prefix("BGP state:").map(|s| s.trim().to_string()))
            .unwrap_or_default()
    }

    /// The `show route PREFIX all` text ("" when BIRD has no such route).
    pub fn route(&self, prefix: &str) -> String {
        // birdc exits non-zero for "Network not found".
        let out = self.try_birdc(&["show", "route", prefix, "all"]).unwrap_or_default();
        if out.contains(prefix.split('/').next().unwrap_or(prefix)) {
            out
        } else {
            String::new()
        }
    }

    /// The `BGP.as_path:` of a route.
    pub fn route_as_path(&self, prefix: &str) -> Option<String> {
        self.route(prefix)
            .lines()
            .find_map(|l| l.trim().strip_prefix("BGP.as_path:").map(|s| s.trim().to_string()))
    }
}

/// A GoBGP daemon in a namespace, with its gRPC API on the namespace's
/// loopback.
pub struct GoBgp {
    ns: String,
    port: u16,
}

impl GoBgp {
    /// A `gobgpd` configuration: AS and router id, and IPv4 neighbors
    /// `(address, AS)` with fast timers (hold 9 s, keepalive 3 s, connect
    /// retry 1 s).
    pub fn config(local_as: u32, router_id: &str, neighbors: &[(&str, u32)]) -> String {
        let mut c = format!("[global.config]\n  as = {local_as}\n  router-id = \"{router_id}\"\n  port = 179\n");
        for (address, asn) in neighbors {
            c.push_str(&format!(
                "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{address}\"\n    peer-as = {asn}\n  \
                 [neighbors.timers.config]\n    hold-time = 9\n    keepalive-interval = 3\n    connect-retry = 1\n"
            ));
        }
        c
    }

    pub fn start(lab: &mut Lab, ns: &str, config_toml: &str) -> GoBgp {
        GoBgp::start_with(lab, ns, config_toml, &[])
    }

    /// [`GoBgp::start`] with more `gobgpd` arguments (`-r`: restarting,
    /// the Restart bit in its graceful-restart capability).
    pub fn start_with(lab: &mut Lab, ns: &str, config_toml: &str, extra: &[&str]) -> GoBgp {
        let work = lab.dir().join(format!("gobgp-{ns}"));
        std::fs::create_dir_all(&work).expect("GoBGP directory");
        let conf = work.join("gobgpd.toml");
        std::fs::write(&conf, config_toml).expect("gobgpd.toml");
        let port = 50051;
        let api = format!("127.0.0.1:{port}");
        lab.spawn(
            &format!("gobgp-{ns}"),
            ns,
            "gobgpd",
            &[
                "-f",
                &conf.display().to_string(),
                "-p",
                "--api-hosts",
                &api,
                "--pprof-disable",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        );
        let g = GoBgp {
            ns: lab.ns_name(ns),
            port,
        };
        crate::wait_until("GoBGP API", std::time::Duration::from_secs(20), || {
            g.try_cli(&["global"]).map(|_| ())
        });
        g
    }

    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let port = self.port.to_string();
        output_text(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, "gobgp", "-p", &port])
                .args(args),
        )
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|e| panic!("gobgp {args:?}: {e}"))
    }

    /// The session state of a neighbor (`ESTABLISHED`, ...), as GoBGP
    /// reports it.
    pub fn neighbor_state(&self, addr: &str) -> String {
        let v: Value =
            serde_json::from_str(&self.try_cli(&["-j", "neighbor", addr]).unwrap_or_default()).unwrap_or(Value::Null);
        v["state"]["session_state"]
            .as_str()
            .map(|s| s.to_string())
            .unwrap_or_else(|| v["state"]["session_state"].to_string())
    }

    /// The AS path of a prefix in GoBGP's global RIB, when present.
    pub fn route_as_path(&self, family: &str, prefix: &str) -> Option<String> {
        let v: Value =
            serde_json::from_str(&self.try_cli(&["-j", "global", "rib", "-a", family, prefix]).ok()?).ok()?;
        let paths = v.as_object()?.values().next()?.as_array()?;
        let attrs = paths.first()?["attrs"].as_array()?;
        let asp = attrs.iter().find(|a| a["type"] == 2)?;
        let segs = asp["as_paths"].as_array()?;
        let asns: Vec<String> = segs
            .iter()
            .flat_map(|s| s["asns"].as_array().cloned().unwrap_or_default())
            .map(|a| a.to_string())
            .collect();
        Some(asns.join(" "))
    }
}
