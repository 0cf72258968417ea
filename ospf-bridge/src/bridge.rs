//! The desired OSPF state of a node kept in a sidecar: each sync probes
//! the daemon, reports when it goes away and comes back (a restarted
//! ospfd has lost what it was told), and makes the running configuration
//! hold exactly the desired interfaces and router id, checking the result
//! by reading the configuration back.

use crate::command::{router_lines, Interface, Version};
use crate::vtysh::{holds, VtyError, Vtysh};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// What the sidecar should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub router_id: Option<Ipv4Addr>,
    /// By (version, interface name).
    pub interfaces: BTreeMap<(Version, String), Interface>,
}

impl Desired {
    pub fn insert(&mut self, i: Interface) {
        self.interfaces.insert((i.version, i.name().to_string()), i);
    }
}

/// What a sync saw and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The daemon answers (again): its version line.
    Connected(String),
    /// The daemon stopped answering.
    Disconnected(String),
    /// An interface was (re)configured.
    Applied(String),
    /// An interface was taken out of OSPF.
    Removed(String),
}

/// One sidecar, as last synced.
pub struct Bridge {
    vty: Vtysh,
    connected: bool,
    applied: BTreeMap<(Version, String), Interface>,
}

impl Bridge {
    pub fn new(vty: Vtysh) -> Bridge {
        Bridge {
            vty,
            connected: false,
            applied: BTreeMap::new(),
        }
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    pub fn vtysh(&self) -> &Vtysh {
        &self.vty
    }

    /// Brings the sidecar to `want`. A daemon that does not answer is not
    /// an error: the change says so and the next sync tries again.
    pub fn sync(&mut self, want: &Desired) -> Result<Vec<Change>, VtyError> {
        let mut changes = Vec::new();
        if let Err(e) = self.vty.show("show ip ospf json") {
            if self.connected {
                self.connected = false;
                changes.push(Change::Disconnected(e.to_string()));
            }
            return Ok(changes);
        }
        if !self.connected {
            self.connected = true;
            let version = self
                .vty
                .show("show version")
                .ok()
                .and_then(|v| v.lines().next().map(str::to_string))
                .unwrap_or_default();
            changes.push(Change::Connected(version));
        }
        let running = self.vty.running_config()?;
        if let Some(id) = want.router_id {
            let lines = router_lines(Version::V2, id);
            if !holds(&running, &lines) {
                self.vty.configure(&lines)?;
            }
        }
        for (key, old) in &self.applied {
            if !want.interfaces.contains_key(key) {
                self.vty.configure(&old.disable_lines())?;
                changes.push(Change::Removed(old.name().to_string()));
            }
        }
        self.applied.retain(|k, _| want.interfaces.contains_key(k));
        for (key, i) in &want.interfaces {
            let lines = i.enable_lines();
            let changed = self.applied.get(key).is_some_and(|old| old != i);
            if changed {
                // Settings the new one leaves out go first.
                self.vty.configure(&self.applied[key].disable_lines())?;
            }
            if changed || !holds(&running, &lines) {
                self.vty.configure(&lines)?;
                changes.push(Change::Applied(i.name().to_string()));
            }
            self.applied.insert(key.clone(), i.clone());
        }
        // What was written must be what FRR holds.
        let after = self.vty.running_config()?;
        for i in want.interfaces.values() {
            if !holds(&after, &i.enable_lines()) {
                return Err(VtyError::Refused(format!(
                    "interface {} is not in the running configuration after it was applied",
                    i.name()
                )));
            }
        }
        Ok(changes)
    }
}
