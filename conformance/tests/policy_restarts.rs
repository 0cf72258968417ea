//! A NetworkPolicy keeps denying while the agent restarts: a denied pod
//! dials a policy-isolated pod every 50 ms while the agent is killed and
//! started again, stopped with SIGTERM and started again, and started
//! while the API server is away; not one connection gets through. The
//! pinned maps are not rewritten until every watch has listed, `/readyz`
//! says so meanwhile, and once the API server answers the agent follows
//! it again (the policy deleted there opens the pod).

use novanet_conformance::kube_server::{self, KubeServer};
use novanet_conformance::policy_node::{reaches, serve, PolicyNode};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::json;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connection attempts from a pod to `ip:80`, one every 50 ms (each given
/// 200 ms), counted until dropped.
struct Prober {
    attempts: Arc<AtomicU64>,
    through: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Prober {
    fn start(lab: &Lab, pod: &str, ip: &str) -> Prober {
        let p = Prober {
            attempts: Arc::default(),
            through: Arc::default(),
            stop: Arc::default(),
        };
        let (attempts, through, stop) = (p.attempts.clone(), p.through.clone(), p.stop.clone());
        let ns = lab.ns_name(pod);
        let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
        std::thread::spawn(move || {
            novanet_conformance::lab::enter_namespace(&ns);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 2];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"ok" {
                        through.fetch_add(1, Ordering::Relaxed);
                    }
                }
                attempts.fetch_add(1, Ordering::Relaxed);
                // The pace of the dialling pod, not a wait for anything.
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        p
    }

    fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn through(&self) -> u64 {
        self.through.load(Ordering::Relaxed)
    }

    /// Waits until `n` more attempts have been made.
    fn wait_attempts(&self, n: u64) {
        let target = self.attempts() + n;
        wait_until(&format!("{n} more attempts"), Duration::from_secs(60), || {
            (self.attempts() >= target)
                .then_some(())
                .ok_or_else(|| self.attempts().to_string())
        });
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn wait_ready(agent: &Agent) {
    wait_until(
        "the agent ready (the policy maps written)",
        Duration::from_secs(30),
        || agent.get("/readyz").map(|_| ()),
    );
}

/// What the API server must hold for the node: its Node, the namespace,
/// both pods and the policy.
fn populate(api: &KubeServer, web_ip: &str, client_ip: &str) {
    api.apply_node(kube_server::node("n1", "10.0.0.11", "10.244.1.0/24"));
    api.apply_namespace("default", json!({"kubernetes.io/metadata.name": "default"}));
    api.apply_pod("default", PolicyNode::pod_object("web", web_ip, json!({"app": "web"})));
    api.apply_pod(
        "default",
        PolicyNode::pod_object("client", client_ip, json!({"app": "client"})),
    );
    api.apply_network_policy(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "trusted"}}}],
                              "ports": [{"protocol": "TCP", "port": 80}]}]}
    }));
}

#[test]
fn a_deny_policy_keeps_denying_across_agent_restarts_and_an_absent_api_server() {
    let mut lab = Lab::new("polrs");
    let node = PolicyNode::new(&mut lab);
    let mut agent = node.start_agent(&mut lab, true);

    let ips = node.wire_pods(&mut lab, &["web", "client"]);
    let (web_ip, client_ip) = (ips[0].clone(), ips[1].clone());
    serve(&lab, "web", &web_ip, &[80]);
    assert!(reaches(&lab, "client", &web_ip, 80), "open before any policy");
    populate(&node.api, &web_ip, &client_ip);
    wait_until("the client refused", Duration::from_secs(20), || {
        (!reaches(&lab, "client", &web_ip, 80))
            .then_some(())
            .ok_or_else(String::new)
    });
    wait_ready(&agent);

    let prober = Prober::start(&lab, "client", &web_ip);
    prober.wait_attempts(10);
    assert_eq!(prober.through(), 0, "denied before any restart");

    for (signal, what) in [(libc::SIGKILL, "killed"), (libc::SIGTERM, "stopped")] {
        lab.signal(&agent.name, signal);
        lab.wait_exit(&agent.name, Duration::from_secs(30));
        agent = node.start_agent(&mut lab, true);
        wait_ready(&agent);
        prober.wait_attempts(20);
        assert_eq!(
            prober.through(),
            0,
            "the denied pod got through around an agent {what} and restarted: {}",
            agent.log(&lab)
        );
    }

    // The API server away: the agent starts from its last-known Node and
    // leaves the maps as they are; not ready, still denying.
    node.api.stop();
    lab.signal(&agent.name, libc::SIGKILL);
    lab.wait_exit(&agent.name, Duration::from_secs(30));
    let away = std::fs::read_to_string(&node.kubeconfig)
        .unwrap()
        .replace("10.0.0.100:6443", "10.0.0.100:6444");
    std::fs::write(&node.kubeconfig, away).unwrap();
    agent = node.start_agent(&mut lab, true);
    prober.wait_attempts(40);
    assert_eq!(
        prober.through(),
        0,
        "the denied pod got through with the API server away"
    );
    let ready = agent.get("/readyz");
    assert!(ready.is_err(), "ready with nothing listed: {ready:?}");

    // The API server answers (on the address the agent now has, holding
    // the same objects): the agent lists, is ready, still denies; then
    // follows a deletion.
    let api = &node.api;
    api.restart_on("10.0.0.100:6444");
    wait_ready(&agent);
    prober.wait_attempts(20);
    assert_eq!(prober.through(), 0, "the denied pod got through as the agent caught up");
    drop(prober);
    api.delete_network_policy("default", "web");
    wait_until("web open once the policy is deleted", Duration::from_secs(20), || {
        reaches(&lab, "client", &web_ip, 80)
            .then_some(())
            .ok_or_else(String::new)
    });
}
