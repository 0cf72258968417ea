//! The identity-policy datapath benchmark (`conformance/bench/datapath.sh`):
//!
//! 1. what a verdict costs per packet, measured by the kernel
//!    (`BPF_PROG_TEST_RUN`): a remembered flow, a new flow a policy
//!    allows, a packet a policy drops;
//! 2. pod-to-pod TCP throughput (iperf3, in namespaces, pods wired by
//!    novanet-cni) without the programs, with them and no policy, and with a
//!    NetworkPolicy that isolates the server and allows the client.
//!
//! `novanet-datapath-bench [SECONDS]` (iperf3 duration, default 5). Needs
//! root, bpffs support and iperf3.

use novanet_conformance::policy_node::{datapath_status, Bpffs, PolicyNode};
use novanet_conformance::{wait_until, Agent, Lab};
use novanet_ebpf::datapath::PolicyState;
use novanet_ebpf::maps::{Addr, PolicyKey, PolicyValue};
use novanet_ebpf::{test_run, Datapath};
use serde_json::{json, Value};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

/// Nanoseconds per packet for each verdict path.
fn verdict_costs(lab_dir: &Path) {
    let pins = Bpffs::mount(&lab_dir.join("bench-bpf"));
    {
        let mut dp = Datapath::load(&pins.0.join("p")).expect("load the programs");
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("10.244.1.1".parse().unwrap(), "10.244.1.2".parse().unwrap());
        let endpoints = [(a, 0x1000u32), (b, 0x2000u32)]
            .into_iter()
            .map(|(ip, id)| (Addr::from(ip), id))
            .collect();
        dp.sync_endpoints(&endpoints).unwrap();
        let mut state = PolicyState::default();
        state.ingress_isolated.insert(0x2000);
        state.ingress.insert(
            PolicyKey::new(0x1000, 0x2000, 6),
            PolicyValue::ranges(&[(80, 80), (8000, 8100)]),
        );
        dp.sync_policy(&state).unwrap();
        let prog = dp.program("to_pod").unwrap();
        let fd = prog.fd().unwrap();
        let run = |pkt: &[u8], repeat: u32| test_run::run(fd.as_fd(), pkt, repeat).unwrap();
        // A remembered flow: the first run allows and remembers it.
        let remembered = run(&test_run::frame(a, b, 6, 1000, 80), 100_000);
        // New flows allowed by the policy: each sport a new flow.
        let mut total = 0u64;
        let n = 2000u16;
        for i in 0..n {
            total += run(&test_run::frame(a, b, 6, 10_000 + i, 8050), 1).duration_ns as u64;
        }
        let denied = run(&test_run::frame(a, b, 6, 2000, 81), 100_000);
        assert_eq!(denied.retval, 2, "the unlisted port is dropped");
        println!("# verdict cost per packet (BPF_PROG_TEST_RUN, to_pod)");
        println!("path                      ns/packet");
        println!("remembered flow           {}", remembered.duration_ns);
        println!("new flow, policy allows   {}", total / n as u64);
        println!("denied by policy          {}", denied.duration_ns);
    }
}

fn iperf(lab: &Lab, client: &str, server_ip: &str, seconds: u64) -> f64 {
    let out = lab
        .cmd(client, "iperf3")
        .args(["-c", server_ip, "-t", &seconds.to_string(), "-J"])
        .output()
        .expect("iperf3");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut lab = Lab::new("dpbench");
    verdict_costs(lab.dir());

    let node = PolicyNode::new(&mut lab);
    let api = &node.api;
    let agent = node.start_agent(&mut lab, false);
    let names = ["server", "client"];
    let ips = node.wire_pods(&mut lab, &names);
    for (name, ip) in names.iter().zip(&ips) {
        api.apply_pod("default", PolicyNode::pod_object(name, ip, json!({"app": name})));
    }
    lab.spawn("iperf3-server", "server", "iperf3", &["-s", "-B", &ips[0]]);
    wait_until("iperf3 to listen", Duration::from_secs(10), || {
        let out = lab.cmd("server", "ss").args(["-ltn"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .contains(":5201")
            .then_some(())
            .ok_or_else(String::new)
    });
    let without = iperf(&lab, "client", &ips[0], seconds);

    // The same pods with the programs (attached again by the new agent).
    lab.signal(&agent.name, libc::SIGTERM);
    lab.wait_exit(&agent.name, Duration::from_secs(20));
    let agent = node.start_agent(&mut lab, true);
    let status = |agent: &Agent| datapath_status(agent, "");
    wait_until("the programs on both pods", Duration::from_secs(20), || {
        let n = status(&agent)["attached"].as_array().map(|a| a.len()).unwrap_or(0);
        (n == 2).then_some(()).ok_or(format!("{n}"))
    });
    let open = iperf(&lab, "client", &ips[0], seconds);
    api.apply_network_policy(json!({
        "metadata": {"name": "server", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                              "ports": [{"protocol": "TCP", "port": 5201}]}]}
    }));
    wait_until("the server isolated", Duration::from_secs(20), || {
        let v = status(&agent);
        let isolated = v["identities"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["labels"]["app"] == "server" && i["ingress_isolated"] == true);
        isolated.then_some(()).ok_or_else(String::new)
    });
    let policed = iperf(&lab, "client", &ips[0], seconds);
    println!();
    println!("# pod to pod TCP on one node, iperf3 {seconds} s (Gbit/s)");
    println!("datapath                          Gbit/s");
    println!("no programs                       {without:.2}");
    println!("programs, no policy               {open:.2}");
    println!("programs, policy isolates server  {policed:.2}");
    drop(agent);
    drop(lab);
    if without <= 0.0 || open <= 0.0 || policed <= 0.0 {
        eprintln!("novanet-datapath-bench: an iperf3 run failed");
        std::process::exit(1);
    }
}
