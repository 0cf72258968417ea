//! API abuse from Python grpcio (`python/api_abuse.py`): an owner's
//! thousands of intents up to its `max_intents` and one too many, owners
//! that do not exist, a request over the message limit, a 100 KB prefix
//! field, an event stream never read while thousands of events pass, and
//! event streams opened until one is refused. Every refusal is a clear
//! gRPC status; the agent's memory stays bounded and a reading stream
//! misses nothing.
//!
//! CI runs 2000 intents; `conformance/chaos.sh api` 10000 (API_INTENTS).

use novanet_conformance::checks::{agent_established, node_a, tor_and_node, tor_routing};
use novanet_conformance::lab::rss_kib;
use novanet_conformance::{Agent, GoBgp, Lab};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "abuse-test-token-2024";

fn metric(agent: &Agent, name: &str) -> f64 {
    agent
        .get("/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn abuse_of_the_api_gets_clear_refusals_and_bounded_memory() {
    let intents: u64 = std::env::var("API_INTENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut lab = Lab::new("apiabuse");
    tor_and_node(&mut lab);
    // The ToR the intents are advertised to (each one sent is an event).
    let _gobgp = GoBgp::start(
        &mut lab,
        "tor",
        &GoBgp::config(65000, "10.0.0.1", &[("10.0.0.10", 65010)]),
    );
    let agent = Agent::start(
        &mut lab,
        "node",
        &node_a(json!({
            "owners": {"abuser": {"token": TOKEN, "allowed_prefixes": {"type": "any"}, "max_intents": intents}},
            "routing": tor_routing()
        })),
    );
    agent_established(&agent, "10.0.0.1");
    let pid = lab.pid(&agent.name).expect("agent pid");
    let before = rss_kib(pid);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/api_abuse.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([agent.socket.to_str().unwrap(), "abuser", TOKEN, &intents.to_string()])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "api_abuse.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: HashMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["step"].as_str().unwrap_or("").to_string(), v))
        .collect();
    let after = rss_kib(pid);
    let dropped = metric(&agent, "novanet_routing_events_dropped_total");
    println!("api abuse: {intents} intents; RSS {before} -> {after} KiB; {dropped} events dropped for the unread stream; {steps:?}");

    assert_eq!(steps["advertised"]["count"], intents);
    assert_eq!(steps["one_too_many"]["code"], "RESOURCE_EXHAUSTED", "{steps:?}");
    assert!(
        steps["one_too_many"]["details"]
            .as_str()
            .unwrap()
            .contains("max_intents"),
        "{steps:?}"
    );
    assert_eq!(
        steps["events_read"]["advertised"], intents,
        "the reading stream missed nothing"
    );
    assert!(
        dropped > 0.0,
        "the unread stream's events beyond its buffer are dropped and counted"
    );
    for step in ["unknown_owner_register", "unknown_owner_advertise"] {
        let code = steps[step]["code"].as_str().unwrap();
        assert!(
            code == "UNAUTHENTICATED" || code == "PERMISSION_DENIED",
            "{step}: {:?}",
            steps[step]
        );
    }
    // Over the 4 MiB message limit: tonic's OUT_OF_RANGE, naming the size.
    let huge = &steps["huge_request"];
    assert!(
        ["OUT_OF_RANGE", "RESOURCE_EXHAUSTED"].contains(&huge["code"].as_str().unwrap()),
        "{huge:?}"
    );
    assert!(huge["details"].as_str().unwrap().contains("too large"), "{huge:?}");
    assert_eq!(
        steps["long_prefix_field"]["code"], "INVALID_ARGUMENT",
        "{:?}",
        steps["long_prefix_field"]
    );
    // The message names the field and quotes a bounded part of the value.
    let long = steps["long_prefix_field"]["details"].as_str().unwrap();
    assert!(
        long.starts_with("prefix \"10.0.0.1/32") && long.contains("100011 bytes") && long.len() < 200,
        "{long}"
    );
    assert_eq!(steps["streams"]["code"], "RESOURCE_EXHAUSTED", "{:?}", steps["streams"]);
    assert!(steps["streams"]["opened"].as_u64().unwrap() <= 256);
    assert_eq!(steps["withdrawn"]["count"], intents);
    // Thousands of intents and streams cost a few MiB, no more.
    assert!(after <= before + 64 * 1024, "RSS {before} -> {after} KiB");
}
