//! What the ospfd sidecar should hold, worked out from the configuration
//! and the owners' intents: the interfaces (the configuration's, then
//! EnableOSPF's; with OSPFv3 on, each in ospf6d too), the injection
//! interface passive in the area, and the prefixes it carries (the
//! PodCIDRs and OSPF prefix intents). Pure: the OSPF task applies it.

use crate::config::{Config, OspfInterface};
use crate::control::intents::Intents;
use crate::control::{ospf_key, prefix_key, IntentKey};
use ipnet::IpNet;
use novanet_ospf_bridge::bridge::{Desired, Key};
use novanet_ospf_bridge::command::{Interface, InterfaceRequest};
use novanet_proto::api::Protocol;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The owner of what the configuration asks for.
pub const CONFIG_OWNER: &str = "_config";

/// The OSPF settings of a node, fixed at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub router_id: Ipv4Addr,
    pub area: String,
    pub injection_interface: String,
    pub ipv6: bool,
    pub interfaces: Vec<OspfInterface>,
    pub pod_cidrs: Vec<IpNet>,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Settings> {
        Ok(Settings {
            router_id: cfg.router_id()?,
            area: cfg.routing.ospf.area.clone(),
            injection_interface: cfg.routing.ospf.injection_interface.clone(),
            ipv6: cfg.ospf_ipv6(),
            interfaces: cfg.routing.ospf.interfaces.clone(),
            pod_cidrs: cfg.pod_cidrs(),
        })
    }
}

/// Who asked for an interface or prefix, and under which intent key
/// (none for the configuration's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub owner: String,
    pub key: Option<IntentKey>,
}

/// The worked-out state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub desired: Desired,
    /// Each interface's origin, by name (both versions share it).
    pub interfaces: BTreeMap<String, Origin>,
    /// The prefixes on the injection interface and their origins.
    pub prefixes: BTreeMap<IpNet, Origin>,
    /// Intents that cannot be applied, with why.
    pub refused: Vec<(IntentKey, String)>,
}

impl Plan {
    /// The prefixes to inject, in order.
    pub fn injected(&self) -> Vec<IpNet> {
        self.prefixes.keys().copied().collect()
    }

    /// The intent behind an interface of the desired state.
    pub fn intent_of(&self, key: &Key) -> Option<&IntentKey> {
        self.interfaces.get(&key.1).and_then(|o| o.key.as_ref())
    }
}

/// Adds an interface (and its OSPFv3 twin) to the plan.
fn add(plan: &mut Plan, s: &Settings, request: InterfaceRequest, origin: Origin) -> Result<(), String> {
    let v2 = Interface::new(&request).map_err(|e| e.to_string())?;
    if s.ipv6 {
        plan.desired
            .insert(Interface::new(&InterfaceRequest { ipv6: true, ..request }).map_err(|e| e.to_string())?);
    }
    plan.interfaces.insert(v2.name().to_string(), origin);
    plan.desired.insert(v2);
    Ok(())
}

/// The plan for `s` and the owners' intents; `injecting` false leaves the
/// injection interface out (the agent is stopping and withdraws).
pub fn plan(s: &Settings, intents: &Intents, injecting: bool) -> Plan {
    let mut plan = Plan {
        desired: Desired {
            router_id: Some(s.router_id),
            ..Default::default()
        },
        ..Default::default()
    };
    let config = |key: Option<IntentKey>| Origin {
        owner: CONFIG_OWNER.into(),
        key,
    };
    for i in &s.interfaces {
        // Checked when the configuration was read.
        let _ = add(&mut plan, s, i.request(&s.area), config(None));
    }
    if injecting {
        // Passive, so no hello is ever sent; the short dead interval only
        // ends its wait (DR election) at once instead of after 40 s.
        let injection = InterfaceRequest {
            name: &s.injection_interface,
            area: &s.area,
            passive: true,
            hello: 1,
            dead: 3,
            ..Default::default()
        };
        let _ = add(&mut plan, s, injection, config(None));
        for c in &s.pod_cidrs {
            if c.addr().is_ipv4() || s.ipv6 {
                plan.prefixes.insert(*c, config(None));
            }
        }
    }
    for (owner, i) in &intents.owners {
        for (name, o) in &i.ospf {
            let key = ospf_key(name);
            if let Some(first) = plan.interfaces.get(name) {
                let why = if first.owner == CONFIG_OWNER {
                    format!("interface {name} is in OSPF from the configuration (routing.ospf.interfaces)")
                } else {
                    format!("interface {name} is already held by owner {}", first.owner)
                };
                plan.refused.push((key, why));
                continue;
            }
            let origin = Origin {
                owner: owner.clone(),
                key: Some(key.clone()),
            };
            if let Err(e) = add(&mut plan, s, o.request(), origin) {
                plan.refused.push((key, e));
            }
        }
    }
    for ((protocol, prefix), (owner, _)) in intents.effective_prefixes() {
        if protocol != Protocol::Ospf as i32 {
            continue;
        }
        if !injecting {
            continue;
        }
        let key = prefix_key(protocol, &prefix);
        if prefix.addr().is_ipv6() && !s.ipv6 {
            plan.refused.push((
                key,
                "IPv6 prefixes need OSPFv3, which is off (routing.ospf.ipv6)".into(),
            ));
            continue;
        }
        // A PodCIDR asked for again is injected once, as the intent.
        plan.prefixes.insert(prefix, Origin { owner, key: Some(key) });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::intents::{OspfIntent, PrefixIntent};
    use novanet_ospf_bridge::command::Version;

    fn settings(ipv6: bool) -> Settings {
        Settings {
            router_id: "10.0.0.1".parse().unwrap(),
            area: "0.0.0.0".into(),
            injection_interface: "novanet-ospf".into(),
            ipv6,
            interfaces: vec![OspfInterface {
                interface_name: "eth0".into(),
                area_id: None,
                passive: false,
                cost: 0,
                hello_interval: 1,
                dead_interval: 3,
            }],
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap(), "fd00:244:1::/64".parse().unwrap()],
        }
    }

    fn ospf(interface: &str, area: &str) -> OspfIntent {
        OspfIntent {
            interface: interface.into(),
            area: area.into(),
            passive: false,
            cost: 10,
            hello: 10,
            dead: 40,
        }
    }

    fn prefix(p: &str) -> PrefixIntent {
        PrefixIntent {
            prefix: p.parse().unwrap(),
            text: p.into(),
            protocol: Protocol::Ospf,
            attributes: None,
        }
    }

    #[test]
    fn the_configuration_s_interfaces_and_the_injection_interface_with_the_pod_cidr() {
        let p = plan(&settings(false), &Intents::default(), true);
        let names: Vec<_> = p.desired.interfaces.keys().cloned().collect();
        assert_eq!(
            names,
            [
                (Version::V2, "eth0".to_string()),
                (Version::V2, "novanet-ospf".to_string())
            ]
        );
        let eth0 = &p.desired.interfaces[&(Version::V2, "eth0".to_string())];
        assert_eq!((eth0.cost, eth0.hello, eth0.dead), (Some(10), Some(1), Some(3)));
        assert!(p.desired.interfaces[&(Version::V2, "novanet-ospf".to_string())].passive);
        assert_eq!(
            p.injected(),
            ["10.244.1.0/24".parse::<IpNet>().unwrap()],
            "no IPv6 PodCIDR without OSPFv3"
        );
        assert!(p
            .interfaces
            .values()
            .all(|o| o.owner == CONFIG_OWNER && o.key.is_none()));
    }

    #[test]
    fn with_ospfv3_every_interface_is_in_both_versions() {
        let p = plan(&settings(true), &Intents::default(), true);
        assert_eq!(p.desired.interfaces.len(), 4);
        assert!(p.desired.has_v3());
        assert_eq!(p.injected().len(), 2);
    }

    #[test]
    fn intents_add_interfaces_and_prefixes_and_conflicts_are_refused() {
        let mut intents = Intents::default();
        let a = intents.owner("a");
        a.ospf.insert("eth1".into(), ospf("eth1", "0.0.0.1"));
        a.ospf.insert("eth0".into(), ospf("eth0", "0"));
        a.prefixes.insert(
            (Protocol::Ospf as i32, "192.0.2.0/24".parse().unwrap()),
            prefix("192.0.2.0/24"),
        );
        a.prefixes.insert(
            (Protocol::Bgp as i32, "198.51.100.0/24".parse().unwrap()),
            prefix("198.51.100.0/24"),
        );
        a.prefixes.insert(
            (Protocol::Ospf as i32, "2001:db8::/48".parse().unwrap()),
            prefix("2001:db8::/48"),
        );
        let b = intents.owner("b");
        b.ospf.insert("eth1".into(), ospf("eth1", "0"));
        b.ospf
            .insert("bad\nrouter bgp 1".into(), ospf("bad\nrouter bgp 1", "0"));
        let p = plan(&settings(false), &intents, true);

        let eth1 = &p.desired.interfaces[&(Version::V2, "eth1".to_string())];
        assert_eq!(eth1.area, Ipv4Addr::new(0, 0, 0, 1));
        assert_eq!(p.interfaces["eth1"].owner, "a");
        assert_eq!(p.intent_of(&(Version::V2, "eth1".into())), Some(&ospf_key("eth1")));
        assert_eq!(
            p.injected(),
            [
                "10.244.1.0/24".parse::<IpNet>().unwrap(),
                "192.0.2.0/24".parse().unwrap()
            ],
            "OSPF prefixes only, IPv4 only without OSPFv3"
        );
        let refused: BTreeMap<String, String> = p.refused.iter().map(|(k, why)| (k.to_string(), why.clone())).collect();
        assert!(refused["ospf:eth0"].contains("from the configuration"), "{refused:?}");
        assert!(refused["ospf:eth1"].contains("held by owner a"), "{refused:?}");
        assert!(
            refused["ospf:bad\nrouter bgp 1"].contains("interface_name"),
            "{refused:?}"
        );
        assert!(refused["prefix:ospf:2001:db8::/48"].contains("OSPFv3"), "{refused:?}");
        assert!(!p.desired.interfaces.keys().any(|(_, n)| n.contains('\n')));
    }

    #[test]
    fn stopping_leaves_the_injection_out() {
        let mut intents = Intents::default();
        intents.owner("a").prefixes.insert(
            (Protocol::Ospf as i32, "192.0.2.0/24".parse().unwrap()),
            prefix("192.0.2.0/24"),
        );
        let p = plan(&settings(false), &intents, false);
        assert!(p.injected().is_empty());
        assert_eq!(
            p.desired.interfaces.len(),
            1,
            "the uplink stays: the withdrawal has to be flooded"
        );
    }
}
