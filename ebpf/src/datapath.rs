//! The loaded programs and their maps: load (maps pinned under a
//! directory on bpffs, reused when they are there already), attach both
//! programs to a pod's host interface (TCX on kernels that have it, clsact
//! otherwise; TCX links pinned beside the maps so they outlive the agent),
//! and bring the maps to a desired state (only the differences are
//! written).

use crate::maps::{counter, Addr, PolicyKey, PolicyValue, PortKey, SourceKey};
use aya::maps::{HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{tc, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{0} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the TC programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("{what}: {source}")]
    Program {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name} holds at most {capacity} entries, {want} were to be written: nothing was written, the previous state stays")]
    Full {
        name: &'static str,
        want: usize,
        capacity: usize,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("pinning {what}: {source}")]
    Pin {
        what: String,
        #[source]
        source: aya::pin::PinError,
    },
}

/// The two programs and where their hooks are.
const PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    // Packets the pod sends enter the node at the host end.
    ("from_pod", TcAttachType::Ingress, "from-pod"),
    // Packets for the pod leave the node at the host end.
    ("to_pod", TcAttachType::Egress, "to-pod"),
];

/// What the policy maps should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// Identities an ingress (egress) policy selects.
    pub ingress_isolated: BTreeSet<u32>,
    pub egress_isolated: BTreeSet<u32>,
    pub ingress: BTreeMap<PolicyKey, PolicyValue>,
    pub egress: BTreeMap<PolicyKey, PolicyValue>,
    /// Ports of entries flagged [`crate::maps::MORE_PORTS`], one by one.
    pub more_ports: BTreeSet<PortKey>,
    /// ipBlock prefixes (address, length on the IPv6-mapped scale) and the
    /// identity each stands for.
    pub cidrs: BTreeMap<(Addr, u32), u32>,
}

impl PolicyState {
    /// The identities whose verdicts differ between `self` and `other`:
    /// isolated in one only, or holding an entry (or listed port) that
    /// differs. Each is the local end of what changed.
    pub fn changed_identities(&self, other: &PolicyState) -> BTreeSet<u32> {
        let mut ids: BTreeSet<u32> = self
            .ingress_isolated
            .symmetric_difference(&other.ingress_isolated)
            .chain(self.egress_isolated.symmetric_difference(&other.egress_isolated))
            .copied()
            .collect();
        for (a, b) in [(&self.ingress, &other.ingress), (&self.egress, &other.egress)] {
            for k in a.keys().chain(b.keys()) {
                if a.get(k) != b.get(k) {
                    ids.insert(k.local);
                }
            }
        }
        ids.extend(self.more_ports.symmetric_difference(&other.more_ports).map(|k| k.local));
        ids
    }
}

/// Verdict counters summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub ingress_allow: u64,
    pub ingress_deny: u64,
    pub egress_allow: u64,
    pub egress_deny: u64,
    pub events_lost: u64,
    /// Packets a pod sent from an address not its own, dropped.
    pub spoofed: u64,
}

/// The loaded programs.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    /// What this datapath last wrote into the policy maps (none yet: the
    /// pinned maps may hold a previous run's).
    written: Option<PolicyState>,
    /// What the endpoints map holds, as last written.
    endpoints: BTreeMap<Addr, u32>,
}

/// How many entries each map the agent writes holds (as
/// `bpf/policy.bpf.c` sizes them): a state that does not fit is refused
/// whole before anything is written.
const CAPACITY: &[(&str, usize)] = &[
    ("endpoints", 65536),
    ("cidrs", 16384),
    ("ingress_isolated", 65536),
    ("egress_isolated", 65536),
    ("ingress_policy", 262144),
    ("egress_policy", 262144),
    ("more_ports", 262144),
];

fn fits(name: &'static str, want: usize) -> Result<(), DatapathError> {
    let capacity = CAPACITY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .expect("a sized map");
    if want > capacity {
        return Err(DatapathError::Full { name, want, capacity });
    }
    Ok(())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Io { what, source }
}

/// An interface's index.
fn ifindex(iface: &str) -> Result<u32, DatapathError> {
    let name = std::ffi::CString::new(iface).map_err(|e| DatapathError::Io {
        what: iface.to_string(),
        source: std::io::Error::other(e),
    })?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(DatapathError::Io {
            what: format!("interface {iface}"),
            source: std::io::Error::last_os_error(),
        }),
        i => Ok(i),
    }
}

/// Takes a pinned link off its hook and removes its pin (a stale pin
/// file too).
fn remove_link(pin: &Path) {
    if let Ok(link) = PinnedLink::from_pin(pin) {
        let _ = link.unpin();
    } else {
        let _ = std::fs::remove_file(pin);
    }
}

/// Whether `dir` is on bpffs.
fn on_bpffs(dir: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs into a zeroed struct we own, on a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

impl Datapath {
    /// Loads the programs; maps are pinned in `pin_dir` (on bpffs), and
    /// maps already pinned there are used as they are.
    pub fn load(pin_dir: &Path) -> Result<Datapath, DatapathError> {
        std::fs::create_dir_all(pin_dir.join("links")).map_err(io(pin_dir.display().to_string()))?;
        if !on_bpffs(pin_dir) {
            return Err(DatapathError::NotBpffs(pin_dir.display().to_string()));
        }
        // The events ring is each agent's own; one pinned by an older
        // agent is only released.
        let _ = std::fs::remove_file(pin_dir.join("events"));
        let mut ebpf = EbpfLoader::new().map_pin_path(pin_dir).load(crate::OBJECT)?;
        for (name, _, _) in PROGRAMS {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .expect("the object has both programs")
                .try_into()
                .map_err(|source| DatapathError::Program {
                    what: name.into(),
                    source,
                })?;
            prog.load().map_err(|source| DatapathError::Program {
                what: format!("loading {name}"),
                source,
            })?;
        }
        Ok(Datapath {
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            written: None,
            endpoints: BTreeMap::new(),
        })
    }

    /// A program, for test runs.
    pub fn program(&self, name: &str) -> Option<&SchedClassifier> {
        self.ebpf.program(name).and_then(|p| p.try_into().ok())
    }

    /// A link's pin: `IFACE:HOOK` (bpffs refuses dots in names; interface
    /// names have no colon).
    fn link_pin(&self, iface: &str, suffix: &str) -> PathBuf {
        self.pin_dir.join("links").join(format!("{iface}:{suffix}"))
    }

    /// Attaches both programs to a pod's host interface, replacing what
    /// this datapath (or the previous agent's) attached there before. The
    /// new link is made before the old one goes: the interface is never
    /// without a program, so a restart opens nothing even for a moment.
    pub fn attach(&mut self, iface: &str) -> Result<(), DatapathError> {
        // Needed for the netlink (clsact) hooks of kernels before TCX; an
        // existing qdisc is fine.
        let _ = tc::qdisc_add_clsact(iface);
        for (name, hook, suffix) in PROGRAMS {
            let pin = self.link_pin(iface, suffix);
            let prog: &mut SchedClassifier =
                self.ebpf
                    .program_mut(name)
                    .expect("loaded")
                    .try_into()
                    .map_err(|source| DatapathError::Program {
                        what: name.into(),
                        source,
                    })?;
            let what = || format!("attaching {name} to {iface}");
            let id = match prog.attach(iface, hook) {
                Ok(id) => id,
                // This very program is attached there already (TCX takes a
                // program once per hook): the old link goes first.
                Err(_) if pin.exists() => {
                    remove_link(&pin);
                    prog.attach(iface, hook)
                        .map_err(|source| DatapathError::Program { what: what(), source })?
                }
                Err(source) => return Err(DatapathError::Program { what: what(), source }),
            };
            let link = prog
                .take_link(id)
                .map_err(|source| DatapathError::Program { what: what(), source })?;
            // The new link holds the hook now; the old one may go.
            remove_link(&pin);
            // A TCX link lives as long as a reference to it: pinned, it
            // outlives the agent. A clsact filter stays by itself.
            if let Ok(fd_link) = FdLink::try_from(link) {
                fd_link.pin(&pin).map_err(|source| DatapathError::Pin {
                    what: pin.display().to_string(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Removes the programs' pinned links of an interface (the interface
    /// may be gone already).
    pub fn detach(&mut self, iface: &str) {
        for (_, _, suffix) in PROGRAMS {
            remove_link(&self.link_pin(iface, suffix));
        }
    }

    /// The interfaces with pinned links.
    pub fn attached(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.pin_dir.join("links"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.rsplit_once(':'))
                    .map(|(i, _)| i.to_string())
            })
            .collect()
    }

    fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<BpfHashMap<&mut MapData, K, V>, DatapathError> {
        let map = self.ebpf.map_mut(name).expect("the object has the map");
        BpfHashMap::try_from(map).map_err(|source| DatapathError::Map { name, source })
    }

    /// Makes a hash map hold exactly `want`.
    fn sync_hash<K: aya::Pod + Ord, V: aya::Pod + PartialEq>(
        &mut self,
        name: &'static str,
        want: &BTreeMap<K, V>,
    ) -> Result<(), DatapathError> {
        let mut map = self.hash::<K, V>(name)?;
        let have: Vec<(K, V)> = map.iter().filter_map(Result::ok).collect();
        for (k, _) in &have {
            if !want.contains_key(k) {
                map.remove(k).map_err(|source| DatapathError::Map { name, source })?;
            }
        }
        for (k, v) in want {
            if have.iter().any(|(hk, hv)| hk == k && hv == v) {
                continue;
            }
            map.insert(k, v, 0)
                .map_err(|source| DatapathError::Map { name, source })?;
        }
        Ok(())
    }

    /// Writes `want`'s entries into a hash map, removing nothing.
    fn add_hash<K: aya::Pod + Ord, V: aya::Pod + PartialEq>(
        &mut self,
        name: &'static str,
        want: &BTreeMap<K, V>,
    ) -> Result<(), DatapathError> {
        let mut map = self.hash::<K, V>(name)?;
        for (k, v) in want {
            map.insert(k, v, 0)
                .map_err(|source| DatapathError::Map { name, source })?;
        }
        Ok(())
    }

    /// Every pod's address and identity. The remembered flows of an
    /// address that appears, goes or changes identity are forgotten (a
    /// new pod on a released address inherits nothing).
    pub fn sync_endpoints(&mut self, want: &BTreeMap<Addr, u32>) -> Result<(), DatapathError> {
        fits("endpoints", want.len())?;
        let have: BTreeMap<Addr, u32> = self
            .hash::<Addr, u32>("endpoints")?
            .iter()
            .filter_map(Result::ok)
            .collect();
        let moved: BTreeSet<Addr> = have
            .keys()
            .chain(want.keys())
            .filter(|a| have.get(a) != want.get(a))
            .copied()
            .collect();
        self.sync_hash("endpoints", want)?;
        self.endpoints = want.clone();
        if !moved.is_empty() {
            self.forget_flows(&moved)?;
        }
        Ok(())
    }

    /// The policy maps; established flows are forgotten when anything
    /// changed, so a new policy applies to them at once. Returns whether
    /// anything was written.
    pub fn sync_policy(&mut self, want: &PolicyState) -> Result<bool, DatapathError> {
        if self.written.as_ref() == Some(want) {
            return Ok(false);
        }
        for (name, len) in [
            ("ingress_isolated", want.ingress_isolated.len()),
            ("egress_isolated", want.egress_isolated.len()),
            ("ingress_policy", want.ingress.len()),
            ("egress_policy", want.egress.len()),
            ("more_ports", want.more_ports.len()),
            ("cidrs", want.cidrs.len()),
        ] {
            fits(name, len)?;
        }
        // Whose remembered flows the change concerns: every pod's when the
        // ipBlocks changed (or nothing is known of what the maps held).
        let concerned: Option<BTreeSet<u32>> = self
            .written
            .as_ref()
            .filter(|old| old.cidrs == want.cidrs)
            .map(|old| old.changed_identities(want));
        let set = |s: &BTreeSet<u32>| s.iter().map(|i| (*i, 1u8)).collect::<BTreeMap<u32, u8>>();
        self.sync_hash("ingress_isolated", &set(&want.ingress_isolated))?;
        self.sync_hash("egress_isolated", &set(&want.egress_isolated))?;
        // The ports an entry points to are there before the entry.
        let more: BTreeMap<PortKey, u8> = want.more_ports.iter().map(|k| (*k, 1u8)).collect();
        self.add_hash("more_ports", &more)?;
        self.sync_hash("ingress_policy", &want.ingress)?;
        self.sync_hash("egress_policy", &want.egress)?;
        self.sync_hash("more_ports", &more)?;
        self.sync_cidrs(&want.cidrs)?;
        match concerned {
            None => self.clear_conntrack()?,
            Some(ids) => {
                let addrs: BTreeSet<Addr> = self
                    .endpoints
                    .iter()
                    .filter(|(_, id)| ids.contains(id))
                    .map(|(a, _)| *a)
                    .collect();
                self.forget_flows(&addrs)?;
            }
        }
        self.written = Some(want.clone());
        Ok(true)
    }

    /// Forgets the remembered flows to or from `addrs`.
    fn forget_flows(&mut self, addrs: &BTreeSet<Addr>) -> Result<(), DatapathError> {
        if addrs.is_empty() {
            return Ok(());
        }
        let mut ct = self.hash::<crate::maps::FlowKey, u64>("conntrack")?;
        let keys: Vec<_> = ct
            .keys()
            .filter_map(Result::ok)
            .filter(|k| addrs.contains(&k.src) || addrs.contains(&k.dst))
            .collect();
        for k in keys {
            let _ = ct.remove(&k);
        }
        Ok(())
    }

    /// How many flows are remembered.
    pub fn remembered_flows(&mut self) -> Result<usize, DatapathError> {
        Ok(self.hash::<crate::maps::FlowKey, u64>("conntrack")?.keys().count())
    }

    fn lpm(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 16], u32>, DatapathError> {
        let map = self.ebpf.map_mut("cidrs").expect("the object has the map");
        LpmTrie::try_from(map).map_err(|source| DatapathError::Map { name: "cidrs", source })
    }

    fn sync_cidrs(&mut self, want: &BTreeMap<(Addr, u32), u32>) -> Result<(), DatapathError> {
        let mut trie = self.lpm()?;
        let have: Vec<(aya::maps::lpm_trie::Key<[u8; 16]>, u32)> = trie.iter().filter_map(Result::ok).collect();
        for (k, _) in &have {
            if !want.contains_key(&(Addr(k.data()), k.prefix_len())) {
                trie.remove(k)
                    .map_err(|source| DatapathError::Map { name: "cidrs", source })?;
            }
        }
        for ((addr, len), id) in want {
            let key = aya::maps::lpm_trie::Key::new(*len, addr.0);
            trie.insert(&key, id, 0)
                .map_err(|source| DatapathError::Map { name: "cidrs", source })?;
        }
        Ok(())
    }

    /// Forgets every remembered flow.
    pub fn clear_conntrack(&mut self) -> Result<(), DatapathError> {
        let mut ct = self.hash::<crate::maps::FlowKey, u64>("conntrack")?;
        let keys: Vec<_> = ct.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = ct.remove(&k);
        }
        Ok(())
    }

    /// The verdict counters.
    pub fn counters(&mut self) -> Result<Counters, DatapathError> {
        let map = self.ebpf.map_mut("counters").expect("the object has the map");
        let arr: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(map).map_err(|source| DatapathError::Map {
            name: "counters",
            source,
        })?;
        let sum = |i: u32| -> u64 { arr.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        debug_assert_eq!(counter::COUNT, 5);
        let mut c = Counters {
            ingress_allow: sum(counter::INGRESS_ALLOW),
            ingress_deny: sum(counter::INGRESS_DENY),
            egress_allow: sum(counter::EGRESS_ALLOW),
            egress_deny: sum(counter::EGRESS_DENY),
            events_lost: sum(counter::EVENTS_LOST),
            spoofed: 0,
        };
        let map = self.ebpf.map_mut("spoofed").expect("the object has the map");
        let arr: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(map).map_err(|source| DatapathError::Map {
            name: "spoofed",
            source,
        })?;
        c.spoofed = arr.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0);
        Ok(c)
    }

    /// Sets the addresses a pod's host end lets out (the pod's own; any
    /// other source is dropped by `from_pod`), replacing what that
    /// interface index held, perhaps for an earlier interface.
    pub fn set_sources(&mut self, iface: &str, addrs: &[std::net::IpAddr]) -> Result<(), DatapathError> {
        let ifindex = ifindex(iface)?;
        let mut map = self.hash::<SourceKey, u8>("pod_sources")?;
        let name = "pod_sources";
        let stale: Vec<SourceKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.ifindex == ifindex && !addrs.iter().any(|a| Addr::from(*a) == { k.addr }))
            .collect();
        for k in stale {
            map.remove(&k).map_err(|source| DatapathError::Map { name, source })?;
        }
        for a in addrs {
            let key = SourceKey {
                ifindex,
                addr: Addr::from(*a),
            };
            map.insert(key, 1, 0)
                .map_err(|source| DatapathError::Map { name, source })?;
        }
        Ok(())
    }

    /// Forgets the sources of interface indexes that no longer exist.
    pub fn prune_sources(&mut self) -> Result<(), DatapathError> {
        let mut map = self.hash::<SourceKey, u8>("pod_sources")?;
        let gone: Vec<SourceKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| {
                let index = k.ifindex;
                // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes.
                let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
                unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) }.is_null()
            })
            .collect();
        for k in gone {
            let _ = map.remove(&k);
        }
        Ok(())
    }

    /// The events ring buffer (taken once: its reader owns it).
    pub fn take_events(&mut self) -> Option<RingBuf<aya::maps::MapData>> {
        self.ebpf.take_map("events").and_then(|m| RingBuf::try_from(m).ok())
    }
}
