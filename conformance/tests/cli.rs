//! `novanetctl` against a running agent peered with a real FRR ToR: every
//! read command in every output format (tables compared with golden text,
//! variable columns masked), `rib` and `explain` on an advertised and a
//! filtered prefix, the write commands with their effect at the ToR, and
//! the error paths.

use novanet_conformance::agent::ctl_binary;
use novanet_conformance::checks::{agent_established, agent_has, tor_and_node, SETTLE};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const FRR: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 neighbor fd00::10 remote-as 65010
 neighbor fd00::10 timers 3 9
 neighbor fd00::10 timers connect 1
 address-family ipv4 unicast
  network 192.0.2.0/24
  network 10.244.10.128/25
  no neighbor fd00::10 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor fd00::10 activate
 exit-address-family
";

struct Ctl<'a> {
    socket: &'a Path,
}

impl Ctl<'_> {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(ctl_binary())
            .arg("--socket")
            .arg(self.socket)
            .args(args)
            .output()
            .expect("run novanetctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "novanetctl {args:?} failed: {out}{err}");
        out
    }

    fn write(&self, owner: &str, args: &[&str]) -> String {
        let token = format!("{owner}-test-token-2024");
        let mut all = vec!["--owner", owner, "--token", &token];
        all.extend_from_slice(args);
        self.ok(&all)
    }
}

/// Replaces the cells of the named columns with `~` (padding kept), by
/// their position in the header line, so a golden text can hold them.
fn mask(table: &str, columns: &[&str]) -> String {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or("").to_string();
    let spans: Vec<(usize, usize)> = columns
        .iter()
        .map(|c| {
            let start = header.find(c).unwrap_or_else(|| panic!("no column {c} in {header}"));
            let end = header[start + c.len()..]
                .find(|ch: char| ch != ' ')
                .map(|i| start + c.len() + i)
                .unwrap_or(usize::MAX);
            (start, end)
        })
        .collect();
    let mut out = header.clone() + "\n";
    for l in lines {
        let mut chars: Vec<char> = l.chars().collect();
        for (s, e) in &spans {
            let e = (*e).min(chars.len());
            if *s < e && chars[*s..e].iter().any(|c| *c != ' ') {
                for (i, ch) in chars[*s..e].iter_mut().enumerate() {
                    *ch = if i == 0 { '~' } else { ' ' };
                }
            }
        }
        out.push_str(chars.into_iter().collect::<String>().trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn novanetctl_read_and_write_commands() {
    let mut lab = Lab::new("ctl");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", FRR);
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.0.10",
            "pod_cidr": "10.244.10.0/24",
            "owners": {
                "novaedge": {"token": "novaedge-test-token-2024", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.0.0.0/8"]}},
                "novanet": {"token": "novanet-test-token-2024", "allowed_prefixes": {"type": "subnet", "allowed_cidrs": ["10.244.0.0/16"]}}
            },
            "routing": {
                "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3, "export": "tor-out"}],
                "policies": {"tor-out": {"rules": [{"prefixes": [{"prefix": "10.244.99.0/24"}], "action": "reject"}], "default": "accept"}}
            }
        }),
    );
    agent_established(&agent, "10.0.0.1");
    agent_has(&agent, "192.0.2.0/24", "10.0.0.1", "65000");
    let ctl = Ctl { socket: &agent.socket };

    // Error paths first.
    let (ok, _, err) = Ctl {
        socket: Path::new("/nonexistent/novaroute.sock"),
    }
    .run(&["routing", "peers"]);
    assert!(!ok && err.contains("not found") && err.lines().count() == 1, "{err}");
    let (ok, _, err) = ctl.run(&[
        "--owner",
        "novaedge",
        "--token",
        "wrong",
        "advertise",
        "--prefix",
        "10.96.0.10/32",
    ]);
    assert!(!ok && err.contains("Unauthenticated"), "{err}");
    let (ok, _, err) = ctl.run(&["advertise", "--prefix", "10.96.0.10/32"]);
    assert!(!ok && err.contains("--owner is required"), "{err}");
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ctl_binary())
        .arg("--socket")
        .arg(&agent.socket)
        .args(["routing", "peers"])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&as_nobody.stderr);
    assert!(
        !as_nobody.status.success() && err.contains("permission denied"),
        "{err}"
    );

    // routing events: a stream in table and JSON form.
    let watch = |format: &str| {
        std::process::Command::new(ctl_binary())
            .arg("--socket")
            .arg(&agent.socket)
            .args(["routing", "events", "--types", "owner_registered", "-o", format])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("novanetctl routing events")
    };
    let (mut table_events, mut json_events) = (watch("table"), watch("json"));
    // Both streams are subscribed once the table header is out.
    let mut table_out = std::io::BufReader::new(table_events.stdout.take().unwrap());
    let mut header = String::new();
    std::io::BufRead::read_line(&mut table_out, &mut header).unwrap();
    assert_eq!(header, "Streaming routing events (Ctrl+C to stop)...\n");
    let mut json_out = std::io::BufReader::new(json_events.stdout.take().unwrap());
    // The JSON stream has no header: give it time to subscribe by
    // registering until its first event arrives.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut json_out, &mut line);
        let _ = tx.send(line);
    });
    let json_line = loop {
        assert!(ctl
            .write("novaedge", &["register"])
            .starts_with("Registered: session_id=novaedge-"));
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            break l;
        }
    };
    let ev: Value = serde_json::from_str(&json_line).unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["owner"].as_str()),
        (Some("owner_registered"), Some("novaedge"))
    );
    let mut line = String::new();
    std::io::BufRead::read_line(&mut table_out, &mut line).unwrap(); // blank line
    line.clear();
    std::io::BufRead::read_line(&mut table_out, &mut line).unwrap();
    assert!(
        line.contains("] owner_registered      owner=novaedge    owner novaedge registered"),
        "{line:?}"
    );
    for mut child in [table_events, json_events] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        ctl.write("novaedge", &["advertise", "--prefix", "10.96.0.10/32"]),
        "Prefix advertised: 10.96.0.10/32 via bgp\n"
    );
    assert_eq!(
        ctl.write("novanet", &["advertise", "--prefix", "10.244.99.0/24", "--med", "7"]),
        "Prefix advertised: 10.244.99.0/24 via bgp\n"
    );
    wait_until("the ToR to hold 10.96.0.10/32", SETTLE, || {
        match frr.route_as_path("ipv4", "10.96.0.10/32") {
            Some(p) if p == "65010" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let out = ctl.write(
        "novanet",
        &[
            "apply-peer",
            "--neighbor",
            "fd00::1",
            "--remote-as",
            "65000",
            "--keepalive",
            "3",
            "--hold-time",
            "9",
            "--address-families",
            "ipv6-unicast",
            "--description",
            "tor-v6",
        ],
    );
    assert_eq!(out, "Peer applied: neighbor=fd00::1 remote_as=65000\n");
    wait_until("FRR to see the CLI's peer", SETTLE, || {
        match frr.neighbor_state("fd00::10").as_str() {
            "Established" => Ok(()),
            s => Err(s.to_string()),
        }
    });
    assert_eq!(
        ctl.write("novanet", &["enable-ospf", "--interface", "eth0", "--area", "0"]),
        "OSPF enabled: interface=eth0 area=0\n"
    );
    assert!(ctl
        .write(
            "novanet",
            &["configure-bgp", "--local-as", "65010", "--router-id", "10.0.0.10"]
        )
        .starts_with("BGP configured: AS=65010 router_id=10.0.0.10"));
    wait_until("the IPv6 peer to show Established", SETTLE, || {
        let v: Value = serde_json::from_str(&ctl.ok(&["routing", "peers", "-o", "json"])).unwrap();
        match v
            .as_array()
            .and_then(|a| a.iter().find(|p| p["neighbor_address"] == "fd00::1"))
        {
            Some(p) if p["state"] == "Established" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // routing peers: table (golden), JSON (contract fields), YAML.
    let peers = mask(&ctl.ok(&["routing", "peers"]), &["UPTIME"]);
    assert_eq!(
        peers,
        "NEIGHBOR  REMOTE AS  ROLE  STATE        UPTIME  PFX RECV  PFX SENT  FAMILIES      BFD  OWNER    LAST ERROR\n\
         10.0.0.1  65000      tor   Established  ~       1         2         ipv4-unicast  -    _config  -\n\
         fd00::1   65000      api   Established  ~       0         0         ipv6-unicast  -    novanet  -\n",
        "{peers}"
    );
    let v: Value = serde_json::from_str(&ctl.ok(&["routing", "peers", "-o", "json"])).unwrap();
    let tor = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["neighbor_address"] == "10.0.0.1")
        .unwrap();
    for key in [
        "neighbor_address",
        "remote_as",
        "state",
        "prefixes_received",
        "prefixes_sent",
        "bfd_status",
    ] {
        assert!(tor.get(key).is_some(), "peers JSON lacks {key}: {tor}");
    }
    assert_eq!(
        (tor["remote_as"].as_u64(), tor["role"].as_str()),
        (Some(65000), Some("tor"))
    );
    assert!(ctl
        .ok(&["routing", "peers", "-o", "yaml"])
        .contains("neighbor_address: 10.0.0.1"));

    // routing prefixes.
    assert_eq!(
        ctl.ok(&["routing", "prefixes"]),
        "PREFIX          PROTOCOL  STATE       OWNER     PEERS     WITHHELD\n\
         10.244.10.0/24  bgp       advertised  _config   10.0.0.1  -\n\
         10.244.99.0/24  bgp       withheld    novanet   -         10.0.0.1: policy tor-out rule 1\n\
         10.96.0.10/32   bgp       advertised  novaedge  10.0.0.1  -\n"
    );
    let v: Value = serde_json::from_str(&ctl.ok(&["routing", "prefixes", "-o", "json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[1]["advertised_to"], json!([]));
    assert_eq!(
        v[1]["not_advertised_to"],
        json!([{"peer": "10.0.0.1", "reason": "policy tor-out rule 1"}])
    );
    assert!(ctl
        .ok(&["routing", "prefixes", "-o", "yaml"])
        .contains("prefix: 10.96.0.10/32"));

    // routing bfd / ospf / status.
    assert_eq!(ctl.ok(&["routing", "bfd"]), "No BFD sessions.\n");
    assert_eq!(
        ctl.write("novanet", &["enable-bfd", "--peer", "10.0.0.1"]),
        "BFD enabled: peer=10.0.0.1\n"
    );
    wait_until("the BFD intent in status", SETTLE, || {
        let out = ctl.ok(&["routing", "bfd"]);
        if out.contains("10.0.0.1") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let bfd = ctl.ok(&["routing", "bfd"]);
    assert!(bfd.starts_with("PEER ADDRESS  STATUS"), "{bfd}");
    assert!(
        bfd.contains("10.0.0.1") && bfd.contains("300ms") && bfd.contains("novanet"),
        "{bfd}"
    );
    let v: Value = serde_json::from_str(&ctl.ok(&["routing", "bfd", "-o", "json"])).unwrap();
    assert_eq!(v[0]["peer_address"], "10.0.0.1");
    assert!(ctl
        .ok(&["routing", "bfd", "-o", "yaml"])
        .contains("peer_address: 10.0.0.1"));
    let ospf = ctl.ok(&["routing", "ospf"]);
    assert!(
        ospf.starts_with("OSPF is off: routing.protocol is \"bgp\"")
            && ospf.contains("\nINTERFACE  AREA  STATE")
            && ospf.contains("failed: OSPF is off"),
        "{ospf}"
    );
    assert!(
        serde_json::from_str::<Value>(&ctl.ok(&["routing", "ospf", "-o", "json"])).unwrap()[0]["interface_name"]
            == "eth0"
    );
    assert!(ctl
        .ok(&["routing", "ospf", "-o", "yaml"])
        .contains("interface_name: eth0"));
    assert_eq!(
        ctl.ok(&["routing", "status"]),
        "Routing Status\n==============\n\nRouting Mode:     native (BGP)\nLocal AS:         65010\nBGP Peers:        2 (2 established)\nPrefixes:         2 advertised\nBFD Sessions:     1 (0 up)\nOSPF Interfaces:  1\n"
    );
    let s: Value = serde_json::from_str(&ctl.ok(&["routing", "status", "-o", "json"])).unwrap();
    assert_eq!(s["peers_established"], 2);
    assert!(ctl
        .ok(&["routing", "status", "-o", "yaml"])
        .contains("peers_established: 2"));

    // rib and explain: advertised and filtered prefixes.
    assert_eq!(
        ctl.ok(&["routing", "rib", "192.0.2.0/24"]),
        "   PREFIX        FROM      NEXT HOP  AS PATH  LOCPRF  MED  ORIGIN  WHY\n\
         *  192.0.2.0/24  10.0.0.1  10.0.0.1  65000    -       0    igp     best (only path)\n"
    );
    assert_eq!(
        ctl.ok(&["routing", "rib", "10.244.10.128/25"]),
        "No routes.\n",
        "refused by the default import policy"
    );
    let v: Value = serde_json::from_str(&ctl.ok(&["routing", "rib", "-o", "json"])).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["prefix"] == "10.244.99.0/24" && p["from"] == "local" && p["med"] == 7));
    assert!(ctl
        .ok(&["routing", "rib", "192.0.2.0/24", "-o", "yaml"])
        .contains("as_path: '65000'"));
    assert_eq!(
        ctl.ok(&["routing", "explain", "10.244.10.0/24", "--peer", "10.0.0.1"]),
        "10.244.10.0/24 to 10.0.0.1: advertised\n  reason:    advertised (export policy tor-out)\n  best path: from local\n  sent as:   AS path [65010], next hop 10.0.0.10\n"
    );
    assert_eq!(
        ctl.ok(&["routing", "explain", "10.244.99.0/24", "--peer", "10.0.0.1"]),
        "10.244.99.0/24 to 10.0.0.1: not advertised\n  reason:    policy tor-out rule 1\n  best path: from local\n"
    );
    let e: Value =
        serde_json::from_str(&ctl.ok(&["routing", "explain", "192.0.2.0/24", "--peer", "10.0.0.1", "-o", "json"]))
            .unwrap();
    assert_eq!(
        (e["advertised"].as_bool(), e["reason"].as_str()),
        (Some(false), Some("learned from this peer"))
    );
    assert!(
        frr.route_as_path("ipv4", "10.244.99.0/24").is_none(),
        "the filtered prefix never reached the ToR"
    );
    assert!(ctl.ok(&["completion", "bash"]).contains("novanetctl"));

    // apply -f (YAML) and the remaining write commands.
    let batch = lab.dir().join("batch.yaml");
    std::fs::write(
        &batch,
        "- action: advertise\n  prefix: 10.96.0.11/32\n- action: advertise\n  prefix: 10.96.0.12/32\n",
    )
    .unwrap();
    let out = ctl.write("novaedge", &["apply", "-f", batch.to_str().unwrap()]);
    assert!(out.ends_with("Applied 2/2 intents (0 failed)\n"), "{out}");
    wait_until("the ToR to hold the batch", SETTLE, || {
        match frr.route_as_path("ipv4", "10.96.0.12/32") {
            Some(_) => Ok(()),
            None => Err("missing".into()),
        }
    });
    assert_eq!(
        ctl.write("novaedge", &["withdraw", "--prefix", "10.96.0.10/32"]),
        "Prefix withdrawn: 10.96.0.10/32 from bgp\n"
    );
    wait_until("the ToR to drop 10.96.0.10/32", SETTLE, || {
        match frr.route_as_path("ipv4", "10.96.0.10/32") {
            None => Ok(()),
            Some(p) => Err(p),
        }
    });
    assert_eq!(
        ctl.write("novanet", &["remove-peer", "--neighbor", "fd00::1"]),
        "Peer removed: neighbor=fd00::1\n"
    );
    wait_until("FRR to lose the CLI's peer", SETTLE, || {
        match frr.neighbor_state("fd00::10").as_str() {
            "Established" => Err("still up".into()),
            _ => Ok(()),
        }
    });
    assert_eq!(
        ctl.write("novanet", &["disable-bfd", "--peer", "10.0.0.1"]),
        "BFD disabled: peer=10.0.0.1\n"
    );
    assert_eq!(
        ctl.write("novanet", &["disable-ospf", "--interface", "eth0"]),
        "OSPF disabled: interface=eth0\n"
    );
    assert_eq!(ctl.ok(&["routing", "bfd"]), "No BFD sessions.\n");
    assert_eq!(ctl.ok(&["routing", "ospf"]), "No OSPF interfaces configured.\n");
    assert_eq!(
        ctl.write("novaedge", &["deregister", "--withdraw-all"]),
        "Deregistered: owner=novaedge withdraw_all=true\n"
    );
    wait_until("the ToR to drop novaedge's batch", SETTLE, || {
        match frr.route_as_path("ipv4", "10.96.0.12/32") {
            None => Ok(()),
            Some(p) => Err(p),
        }
    });
}
