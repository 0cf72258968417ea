//! The desired OSPF state of a node kept in a sidecar. [`Bridge::check`]
//! probes the daemons and tells when they go away, come back, or were
//! restarted in between (their vty socket or pid file replaced: a restarted
//! ospfd has lost what it was told); [`Bridge::sync`] makes the running
//! configuration hold exactly the desired interfaces and router id, one
//! interface at a time so one refusal does not hold the others back, and
//! checks the result by reading the configuration back.

use crate::command::{clear_lines, import_filter_lines, router_lines, Interface, Version};
use crate::readback::{self, Neighbor};
use crate::vtysh::{holds, VtyError, Vtysh};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;

/// An interface of the desired state: OSPF version and name.
pub type Key = (Version, String);

/// What the sidecar should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub router_id: Option<Ipv4Addr>,
    pub interfaces: BTreeMap<Key, Interface>,
    /// Prefixes zebra never installs an OSPF route into (the node's
    /// PodCIDRs; [`import_filter_lines`]).
    pub own_prefixes: Vec<ipnet::IpNet>,
}

impl Desired {
    pub fn insert(&mut self, i: Interface) {
        self.interfaces.insert((i.version, i.name().to_string()), i);
    }

    /// Whether ospf6d is needed.
    pub fn has_v3(&self) -> bool {
        self.interfaces.keys().any(|(v, _)| *v == Version::V3)
    }
}

/// What a check or sync saw and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The daemons answer (again): FRR's version line.
    Connected(String),
    /// A daemon stopped answering, or was restarted: why.
    Disconnected(String),
    /// An interface was (re)configured.
    Applied(Version, String),
    /// An interface was taken out of OSPF.
    Removed(Version, String),
}

/// The outcome of a sync.
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    /// Interfaces FRR refused or does not hold after they were applied.
    pub failed: BTreeMap<Key, VtyError>,
    /// The router id, when FRR refused it.
    pub router_failed: Option<VtyError>,
    /// The import filter, when FRR refused it.
    pub filter_failed: Option<VtyError>,
}

/// How a running daemon is told apart from its successor: its vty
/// socket's inode and its pid file.
type Identity = Vec<(Option<(u64, u64)>, Option<String>)>;

/// A `show ... json` command and the parser of its output.
type Reading<'a, T> = (&'a str, fn(&str) -> Result<Vec<T>, serde_json::Error>);

/// One sidecar, as last seen.
pub struct Bridge {
    vty: Vtysh,
    connected: bool,
    version: String,
    identity: Identity,
    applied: BTreeMap<Key, Interface>,
    neighbors: Vec<(Version, Neighbor)>,
    /// A sync must re-check everything (first contact, a restart).
    stale: bool,
    /// Why the last probe failed, while not connected.
    probe_error: Option<String>,
}

impl Bridge {
    pub fn new(vty: Vtysh) -> Bridge {
        Bridge {
            vty,
            connected: false,
            version: String::new(),
            identity: Vec::new(),
            applied: BTreeMap::new(),
            neighbors: Vec::new(),
            stale: true,
            probe_error: None,
        }
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    /// FRR's version line, once connected.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn vtysh(&self) -> &Vtysh {
        &self.vty
    }

    /// The adjacencies as last read by [`Bridge::check`].
    pub fn neighbors(&self) -> &[(Version, Neighbor)] {
        &self.neighbors
    }

    /// Why the daemons did not answer the last probe (none once they do).
    pub fn probe_error(&self) -> Option<&str> {
        self.probe_error.as_deref()
    }

    /// Whether the next sync has to re-check the whole state.
    pub fn needs_sync(&self) -> bool {
        self.stale
    }

    fn daemons(v3: bool) -> &'static [&'static str] {
        if v3 {
            &["zebra", "ospfd", "ospf6d"]
        } else {
            &["zebra", "ospfd"]
        }
    }

    fn identity(&self, v3: bool) -> Identity {
        let dir = self.vty.socket_dir();
        Self::daemons(v3)
            .iter()
            .map(|d| {
                let socket = std::fs::metadata(dir.join(format!("{d}.vty")))
                    .ok()
                    .map(|m| (m.dev(), m.ino()));
                let pid = std::fs::read_to_string(dir.join(format!("{d}.pid")))
                    .ok()
                    .map(|p| p.trim().to_string());
                (socket, pid)
            })
            .collect()
    }

    /// Probes the daemons (zebra, and ospfd's and, with `v3`, ospf6d's
    /// neighbor lists, read for [`Bridge::neighbors`]) and reports a
    /// connection change. A
    /// daemon that does not answer is not an error: the change says so.
    pub fn check(&mut self, v3: bool) -> Vec<Change> {
        let mut changes = Vec::new();
        let probed = self.read_neighbors(v3);
        let identity = self.identity(v3);
        self.probe_error = probed.as_ref().err().map(|e| e.to_string());
        match probed {
            Err(e) => {
                if self.connected {
                    self.connected = false;
                    self.neighbors.clear();
                    changes.push(Change::Disconnected(e.to_string()));
                }
                self.stale = true;
            }
            Ok(neighbors) => {
                if self.connected && identity != self.identity {
                    changes.push(Change::Disconnected(
                        "the sidecar's daemons were restarted (vty socket or pid file replaced)".into(),
                    ));
                    self.connected = false;
                }
                if !self.connected {
                    self.connected = true;
                    self.stale = true;
                    self.version = self
                        .vty
                        .show("show version")
                        .ok()
                        .and_then(|v| v.lines().next().map(str::to_string))
                        .unwrap_or_default();
                    changes.push(Change::Connected(self.version.clone()));
                }
                self.neighbors = neighbors;
            }
        }
        self.identity = identity;
        changes
    }

    /// A `show ... json` command's output, parsed.
    fn read<T>(&self, command: &str, parse: fn(&str) -> Result<T, serde_json::Error>) -> Result<T, VtyError> {
        parse(&self.vty.show(command)?).map_err(|e| VtyError::Unreadable(format!("{command}: {e}")))
    }

    /// What `v2` (and, with `v3`, `v3_read`) read, each tagged with its
    /// version.
    fn both<T>(&self, v3: bool, v2: Reading<T>, v3_read: Reading<T>) -> Result<Vec<(Version, T)>, VtyError> {
        let mut all: Vec<(Version, T)> = self.read(v2.0, v2.1)?.into_iter().map(|x| (Version::V2, x)).collect();
        if v3 {
            all.extend(self.read(v3_read.0, v3_read.1)?.into_iter().map(|x| (Version::V3, x)));
        }
        Ok(all)
    }

    fn read_neighbors(&self, v3: bool) -> Result<Vec<(Version, Neighbor)>, VtyError> {
        // zebra installs what ospfd learns: without it the sidecar is not
        // doing its job either.
        self.vty.show("show zebra")?;
        self.both(
            v3,
            ("show ip ospf neighbor json", readback::neighbors),
            ("show ipv6 ospf6 neighbor json", readback::ospf6_neighbors),
        )
    }

    /// The interfaces as ospfd (and, with `v3`, ospf6d) report them.
    pub fn interfaces(&self, v3: bool) -> Result<Vec<(Version, readback::InterfaceState)>, VtyError> {
        self.both(
            v3,
            ("show ip ospf interface json", readback::interfaces),
            ("show ipv6 ospf6 interface json", readback::ospf6_interfaces),
        )
    }

    /// Whether ospfd (or ospf6d, for IPv6 prefixes) still originates any
    /// of `prefixes` in its own LSAs.
    pub fn originates_any(&self, prefixes: &[ipnet::IpNet]) -> Result<bool, VtyError> {
        let mut originated = Vec::new();
        if prefixes.iter().any(|p| p.addr().is_ipv4()) {
            originated.extend(self.read(
                "show ip ospf database router self-originate json",
                readback::originated_v2,
            )?);
        }
        if prefixes.iter().any(|p| p.addr().is_ipv6()) {
            originated.extend(self.read(
                "show ipv6 ospf6 database intra-prefix self-originate json",
                readback::originated_v3,
            )?);
        }
        Ok(prefixes.iter().any(|p| originated.contains(p)))
    }

    /// Brings the sidecar to `want`: checks the connection first, then
    /// applies what differs. OSPF interface settings in the sidecar that
    /// are not wanted (left by an earlier agent, say) are removed.
    pub fn sync(&mut self, want: &Desired) -> Result<Report, VtyError> {
        let mut report = Report {
            changes: self.check(want.has_v3()),
            ..Default::default()
        };
        if !self.connected {
            return Ok(report);
        }
        if self.stale {
            // What a restarted daemon lost must be written again.
            self.applied.clear();
        }
        let running = self.vty.running_config()?;
        if let Some(id) = want.router_id {
            let mut versions = vec![Version::V2];
            if want.has_v3() {
                versions.push(Version::V3);
            }
            for v in versions {
                let lines = router_lines(v, id);
                if !holds(&running, &lines) {
                    if let Err(e) = self.vty.configure(&lines) {
                        report.router_failed = Some(e);
                    }
                }
            }
        }
        let filter = import_filter_lines(&want.own_prefixes);
        let written: Vec<String> = filter.iter().filter(|l| !l.starts_with("no ")).cloned().collect();
        if !holds(&running, &written) {
            if let Err(e) = self.vty.configure(&filter) {
                report.filter_failed = Some(e);
            }
        }
        let mut unwanted: Vec<Key> = readback::configured_interfaces(&running)
            .into_iter()
            .filter(|k| !want.interfaces.contains_key(k))
            .collect();
        unwanted.extend(
            self.applied
                .keys()
                .filter(|k| !want.interfaces.contains_key(*k))
                .cloned(),
        );
        unwanted.sort();
        unwanted.dedup();
        for (version, name) in unwanted {
            let lines = match self.applied.remove(&(version, name.clone())) {
                Some(old) => old.disable_lines(),
                None => clear_lines(version, &name),
            };
            match self.vty.configure(&lines) {
                Ok(()) => report.changes.push(Change::Removed(version, name)),
                Err(e) => {
                    report.failed.insert((version, name), e);
                }
            }
        }
        for (key, i) in &want.interfaces {
            let lines = i.enable_lines();
            let changed = self.applied.get(key).is_some_and(|old| old != i);
            let result = (|| {
                if changed {
                    // Settings the new one leaves out go first.
                    self.vty.configure(&self.applied[key].disable_lines())?;
                }
                if changed || !holds(&running, &lines) {
                    self.vty.configure(&lines)?;
                    report.changes.push(Change::Applied(key.0, key.1.clone()));
                }
                Ok(())
            })();
            match result {
                Ok(()) => {
                    self.applied.insert(key.clone(), i.clone());
                }
                Err(e) => {
                    self.applied.remove(key);
                    // FRR may echo a refused line, key and all.
                    let e = match &i.authentication {
                        Some(a) => a.redact(e),
                        None => e,
                    };
                    report.failed.insert(key.clone(), e);
                }
            }
        }
        // What was written must be what FRR holds.
        let after = self.vty.running_config()?;
        for (key, i) in &want.interfaces {
            if !report.failed.contains_key(key) && !holds(&after, &i.enable_lines()) {
                self.applied.remove(key);
                report.failed.insert(
                    key.clone(),
                    VtyError::Refused(format!(
                        "interface {} is not in the running configuration after it was applied",
                        i.name()
                    )),
                );
            }
        }
        // What failed is in the report; the caller decides when to retry.
        self.stale = false;
        Ok(report)
    }
}
