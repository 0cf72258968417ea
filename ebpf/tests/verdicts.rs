//! The TC programs run by the kernel on crafted packets
//! (`BPF_PROG_TEST_RUN`), with maps as the agent fills them: allowed,
//! denied, replies of allowed flows, unknown sources, ipBlocks, IPv6, the
//! verdict counters and the drop events. Needs root; each test mounts a
//! bpffs of its own.

use novanet_ebpf::datapath::PolicyState;
use novanet_ebpf::maps::{
    Addr, EventKind, FlowEvent, PolicyKey, PolicyValue, PortKey, DIRECTION_INGRESS, IDENTITY_ANY, MORE_PORTS,
};
use novanet_ebpf::test_run;
use novanet_ebpf::Datapath;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

const PASS: u32 = 0;
const DROP: u32 = 2;
const TCP: u8 = 6;
const UDP: u8 = 17;

const POD_A: u32 = 0x1000;
const POD_B: u32 = 0x2000;
const BLOCK: u32 = 0x8000_0001;

/// A bpffs of its own for one test (mounted on a fresh directory, so tests
/// running in parallel never stack mounts on /sys/fs/bpf or depend on it
/// being mounted), with the pin directory inside; unmounted and removed
/// when dropped.
struct PinDir {
    mount: PathBuf,
    pins: PathBuf,
}

impl PinDir {
    fn new() -> PinDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let mount = std::env::temp_dir().join(format!(
            "novanet-bpffs-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&mount).expect("bpffs mount point");
        let st = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&mount)
            .status()
            .expect("mount bpffs");
        assert!(st.success(), "these tests need root and bpffs support in the kernel");
        let pins = mount.join("novanet");
        PinDir { mount, pins }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins);
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn packet(src: &str, dst: &str, protocol: u8, sport: u16, dport: u16) -> Vec<u8> {
    test_run::frame(ip(src), ip(dst), protocol, sport, dport)
}

fn run(dp: &Datapath, program: &str, pkt: &[u8]) -> u32 {
    let prog = dp.program(program).expect("program");
    let fd = prog.fd().expect("loaded");
    test_run::run(fd.as_fd(), pkt, 1).expect("BPF_PROG_TEST_RUN").retval
}

fn endpoints() -> BTreeMap<Addr, u32> {
    [
        ("10.244.1.10", POD_A),
        ("10.244.2.20", POD_B),
        ("fd00:244:1::a", POD_A),
        ("fd00:244:2::14", POD_B),
    ]
    .into_iter()
    .map(|(a, id)| (Addr::from(ip(a)), id))
    .collect()
}

#[test]
fn verdicts_follow_the_maps() {
    let pins = PinDir::new();
    let mut dp = Datapath::load(&pins.pins).expect("load");
    dp.sync_endpoints(&endpoints()).unwrap();
    // BPF_PROG_TEST_RUN hands the programs its packets on the loopback
    // interface: from_pod takes them as sent by a pod holding both.
    dp.set_sources("lo", &[ip("10.244.1.10"), ip("10.244.2.20")]).unwrap();
    let a_to_b_80 = packet("10.244.1.10", "10.244.2.20", TCP, 40000, 80);

    // No policy selects B: open.
    assert_eq!(run(&dp, "to_pod", &a_to_b_80), PASS);

    // B isolated for ingress, nothing allowed.
    let mut state = PolicyState::default();
    state.ingress_isolated.insert(POD_B);
    assert!(dp.sync_policy(&state).unwrap());
    let a_to_b_81 = packet("10.244.1.10", "10.244.2.20", TCP, 40001, 81);
    assert_eq!(run(&dp, "to_pod", &a_to_b_81), DROP);

    // A may reach B on TCP 80 and 8000-8080.
    state.ingress.insert(
        PolicyKey::new(POD_A, POD_B, TCP),
        PolicyValue::ranges(&[(80, 80), (8000, 8080)]),
    );
    dp.sync_policy(&state).unwrap();
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 40002, 80)),
        PASS
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 40003, 8042)),
        PASS
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 40004, 8081)),
        DROP
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", UDP, 40005, 80)),
        DROP
    );
    // A flow B's ingress refused is not let in because A's egress (open)
    // allowed it on A's host end first.
    assert_eq!(
        run(&dp, "from_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 40020, 81)),
        PASS
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 40020, 81)),
        DROP
    );
    // An unknown source (world) is not A.
    assert_eq!(
        run(&dp, "to_pod", &packet("203.0.113.9", "10.244.2.20", TCP, 40006, 80)),
        DROP
    );

    // B egress-isolated with nothing allowed: its replies to the allowed
    // flow still pass, a new connection of its own does not.
    state.egress_isolated.insert(POD_B);
    dp.sync_policy(&state).unwrap();
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 40010, 80)),
        PASS
    );
    assert_eq!(
        run(&dp, "from_pod", &packet("10.244.2.20", "10.244.1.10", TCP, 80, 40010)),
        PASS,
        "the reply"
    );
    assert_eq!(
        run(&dp, "from_pod", &packet("10.244.2.20", "10.244.1.10", TCP, 5555, 22)),
        DROP,
        "a new flow"
    );

    // Any peer on UDP 53; an ipBlock's prefix on TCP 443.
    state.ingress.insert(
        PolicyKey::new(IDENTITY_ANY, POD_B, UDP),
        PolicyValue::ranges(&[(53, 53)]),
    );
    state.cidrs.insert((Addr::from(ip("192.0.2.0")), 96 + 24), BLOCK);
    state
        .ingress
        .insert(PolicyKey::new(BLOCK, POD_B, TCP), PolicyValue::ranges(&[(443, 443)]));
    dp.sync_policy(&state).unwrap();
    assert_eq!(
        run(&dp, "to_pod", &packet("203.0.113.9", "10.244.2.20", UDP, 1000, 53)),
        PASS
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("192.0.2.77", "10.244.2.20", TCP, 1001, 443)),
        PASS
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("198.51.100.1", "10.244.2.20", TCP, 1002, 443)),
        DROP
    );
    // A pod's address inside an ipBlock is in that block too: pod A
    // (10.244.1.10) reaches B's 443 once 10.244.1.0/24 is allowed.
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 1003, 443)),
        DROP
    );
    state.cidrs.insert((Addr::from(ip("10.244.1.0")), 96 + 24), BLOCK + 1);
    state.ingress.insert(
        PolicyKey::new(BLOCK + 1, POD_B, TCP),
        PolicyValue::ranges(&[(443, 443)]),
    );
    dp.sync_policy(&state).unwrap();
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 1004, 443)),
        PASS
    );
    state.ingress.remove(&PolicyKey::new(BLOCK + 1, POD_B, TCP));
    state.cidrs.remove(&(Addr::from(ip("10.244.1.0")), 96 + 24));
    dp.sync_policy(&state).unwrap();

    // IPv6 alike.
    assert_eq!(
        run(&dp, "to_pod", &packet("fd00:244:1::a", "fd00:244:2::14", TCP, 2000, 80)),
        PASS
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("fd00:244:1::a", "fd00:244:2::14", TCP, 2001, 22)),
        DROP
    );

    // Counters and drop events.
    let c = dp.counters().unwrap();
    assert!(
        c.ingress_deny >= 6 && c.egress_deny >= 1 && c.ingress_allow >= 5,
        "{c:?}"
    );
    let mut ring = dp.take_events().expect("the events ring");
    let mut drops = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(e) = FlowEvent::parse(&item) {
            if e.kind == EventKind::Drop {
                drops.push(e);
            }
        }
    }
    assert!(drops
        .iter()
        .any(|e| e.dport == 8081 && e.src == ip("10.244.1.10") && e.dst_identity == POD_B));
}

#[test]
fn a_pod_sends_only_from_its_own_addresses() {
    let pins = PinDir::new();
    let mut dp = Datapath::load(&pins.pins).expect("load");
    dp.sync_endpoints(&endpoints()).unwrap();
    dp.set_sources("lo", &[ip("10.244.1.10"), ip("fd00:244:1::10")])
        .unwrap();
    // Its own addresses pass (no policy isolates it).
    assert_eq!(
        run(&dp, "from_pod", &packet("10.244.1.10", "10.0.0.1", UDP, 40000, 3784)),
        PASS
    );
    assert_eq!(
        run(&dp, "from_pod", &packet("fd00:244:1::10", "fd00::1", UDP, 40000, 53)),
        PASS
    );
    // Neighbour discovery from link-local and unspecified addresses passes.
    assert_eq!(run(&dp, "from_pod", &packet("fe80::1", "ff02::2", 58, 0, 0)), PASS);
    assert_eq!(run(&dp, "from_pod", &packet("::", "ff02::1:ff00:10", 58, 0, 0)), PASS);
    // Another pod's, the ToR's, the node's: dropped and counted, whatever
    // policy says of them.
    for spoofed in ["10.244.2.20", "10.0.0.1", "10.0.0.11", "fd00:244:1::11"] {
        let dst = if spoofed.contains(':') { "fd00::1" } else { "10.0.0.12" };
        assert_eq!(
            run(&dp, "from_pod", &packet(spoofed, dst, UDP, 3784, 3784)),
            DROP,
            "{spoofed}"
        );
    }
    assert_eq!(dp.counters().unwrap().spoofed, 4);
    // Packets to the pod are not judged by their source.
    assert_eq!(
        run(&dp, "to_pod", &packet("10.0.0.1", "10.244.1.10", UDP, 3784, 3784)),
        PASS
    );
    // Replaced: the old address no longer passes.
    dp.set_sources("lo", &[ip("10.244.1.99")]).unwrap();
    assert_eq!(
        run(&dp, "from_pod", &packet("10.244.1.10", "10.0.0.1", UDP, 40001, 3784)),
        DROP
    );
    assert_eq!(
        run(&dp, "from_pod", &packet("10.244.1.99", "10.0.0.1", UDP, 40001, 3784)),
        PASS
    );
}

#[test]
fn ports_past_an_entry_s_ranges_are_looked_up_one_by_one() {
    let pins = PinDir::new();
    let mut dp = Datapath::load(&pins.pins).expect("load");
    dp.sync_endpoints(&endpoints()).unwrap();
    let mut state = PolicyState::default();
    state.ingress_isolated.insert(POD_B);
    // Sixteen ranges in the entry, 1000-1001 ... 1030-1031, and two more
    // ports, 80 and 443, listed on their own.
    let ranges: Vec<(u16, u16)> = (0..16).map(|i| (1000 + 2 * i, 1001 + 2 * i)).collect();
    let mut v = PolicyValue::ranges(&ranges);
    v.flags |= MORE_PORTS;
    state.ingress.insert(PolicyKey::new(POD_A, POD_B, TCP), v);
    for port in [80, 443] {
        state.more_ports.insert(PortKey {
            peer: POD_A,
            local: POD_B,
            protocol: TCP,
            direction: DIRECTION_INGRESS,
            port,
        });
    }
    dp.sync_policy(&state).unwrap();
    let to_b =
        |dp: &Datapath, sport, dport| run(dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, sport, dport));
    assert_eq!(to_b(&dp, 41000, 1031), PASS, "the last range");
    assert_eq!(to_b(&dp, 41001, 80), PASS, "a listed port");
    assert_eq!(to_b(&dp, 41002, 443), PASS, "a listed port");
    assert_eq!(to_b(&dp, 41003, 81), DROP, "between listed ports");
    assert_eq!(to_b(&dp, 41004, 1032), DROP, "past the ranges");
    // Without the flag the listed ports are not consulted.
    state.ingress.get_mut(&PolicyKey::new(POD_A, POD_B, TCP)).unwrap().flags = 0;
    dp.sync_policy(&state).unwrap();
    assert_eq!(to_b(&dp, 41005, 80), DROP);
    // The listed ports go with their entry.
    state.ingress.clear();
    state.more_ports.clear();
    dp.sync_policy(&state).unwrap();
    assert_eq!(to_b(&dp, 41006, 443), DROP);
}

#[test]
fn a_policy_change_forgets_only_the_flows_it_concerns_and_a_state_too_big_is_refused_whole() {
    let pins = PinDir::new();
    let mut dp = Datapath::load(&pins.pins).expect("load");
    dp.sync_endpoints(&endpoints()).unwrap();
    let mut state = PolicyState::default();
    state.egress_isolated.insert(0x3000); // an identity with no pod here
    dp.sync_policy(&state).unwrap();
    // Two remembered flows: A to B, and the world to A.
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 42000, 80)),
        PASS
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("203.0.113.9", "10.244.1.10", TCP, 42001, 80)),
        PASS
    );
    assert_eq!(dp.remembered_flows().unwrap(), 2);
    // B's policy changes: B's flows are forgotten, A's other flow stays.
    state.ingress_isolated.insert(POD_B);
    state
        .ingress
        .insert(PolicyKey::new(POD_A, POD_B, TCP), PolicyValue::ranges(&[(80, 80)]));
    assert!(dp.sync_policy(&state).unwrap());
    assert_eq!(dp.remembered_flows().unwrap(), 1, "only the flow to B is forgotten");
    // Another tenant's identity comes and goes: nothing of A's or B's.
    state.egress_isolated.remove(&0x3000);
    assert!(dp.sync_policy(&state).unwrap());
    assert_eq!(dp.remembered_flows().unwrap(), 1);

    // More endpoints than the map holds: refused before anything is
    // written; the pods keep their identities.
    let too_many: BTreeMap<Addr, u32> = (0..65537u32)
        .map(|i| {
            (
                Addr::from(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))),
                0x1000,
            )
        })
        .collect();
    let e = dp.sync_endpoints(&too_many).unwrap_err().to_string();
    assert!(
        e.contains("endpoints") && e.contains("65536") && e.contains("nothing was written"),
        "{e}"
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 42002, 80)),
        PASS,
        "A is still A"
    );
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 42003, 81)),
        DROP
    );
}

#[test]
fn maps_outlive_the_loader_and_are_found_again() {
    let pins = PinDir::new();
    {
        let mut dp = Datapath::load(&pins.pins).expect("load");
        dp.sync_endpoints(&endpoints()).unwrap();
        let mut state = PolicyState::default();
        state.ingress_isolated.insert(POD_B);
        dp.sync_policy(&state).unwrap();
    }
    // A new loader (an agent restart) finds the pinned maps: B is still
    // isolated before anything is written again.
    let dp = Datapath::load(&pins.pins).expect("load again");
    assert_eq!(
        run(&dp, "to_pod", &packet("10.244.1.10", "10.244.2.20", TCP, 1, 80)),
        DROP
    );
}

#[test]
fn programs_attach_to_an_interface_and_are_listed() {
    let pins = PinDir::new();
    let mut dp = Datapath::load(&pins.pins).expect("load");
    let name = format!("nvt{}", std::process::id() % 100_000);
    let peer = format!("{name}p");
    let ok = std::process::Command::new("ip")
        .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
        .status()
        .unwrap()
        .success();
    assert!(ok, "a veth pair");
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _gone = Gone(name.clone());
    dp.attach(&name).expect("attach");
    assert!(dp.attached().contains(&name), "{:?}", dp.attached());
    dp.attach(&name).expect("attach again replaces");
    dp.detach(&name);
    assert!(!dp.attached().contains(&name));
}
