//! What the ospfd sidecar should hold, worked out from the configuration
//! and the owners' requests: the interfaces (the configuration's, then
//! EnableOSPF's; with OSPFv3 on, each in ospf6d too), the injection
//! interface passive in the area, and the prefixes it carries (the
//! PodCIDRs and OSPF prefix intents). Pure: the OSPF task applies it.

use super::requests::{Item, Requests};
use crate::config::{Config, OspfInterface};
use ipnet::IpNet;
use novanet_ospf_bridge::bridge::{Desired, Key};
use novanet_ospf_bridge::command::{Authentication, Interface, InterfaceRequest};
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
    /// What every interface's packets are signed with.
    pub authentication: Option<Authentication>,
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
            authentication: cfg.routing.ospf.authentication.clone(),
        })
    }
}

/// Who asked for an interface or prefix, and as which request (none for
/// the configuration's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub owner: String,
    pub key: Option<Item>,
}

/// The worked-out state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub desired: Desired,
    /// Each interface's origin, by name (both versions share it).
    pub interfaces: BTreeMap<String, Origin>,
    /// The prefixes on the injection interface and their origins.
    pub prefixes: BTreeMap<IpNet, Origin>,
    /// Requests that cannot be applied, with why.
    pub refused: Vec<(Item, String)>,
}

impl Plan {
    /// The prefixes to inject, in order.
    pub fn injected(&self) -> Vec<IpNet> {
        self.prefixes.keys().copied().collect()
    }

    /// The request behind an interface of the desired state.
    pub fn intent_of(&self, key: &Key) -> Option<&Item> {
        self.interfaces.get(&key.1).and_then(|o| o.key.as_ref())
    }
}

/// Adds an interface (and its OSPFv3 twin) to the plan.
fn add(plan: &mut Plan, s: &Settings, request: InterfaceRequest, origin: Origin) -> Result<(), String> {
    let signed = |r: &InterfaceRequest| {
        Interface::new(r)
            .map(|i| i.signed(s.authentication.clone()))
            .map_err(|e| e.to_string())
    };
    let v2 = signed(&request)?;
    if s.ipv6 {
        plan.desired
            .insert(signed(&InterfaceRequest { ipv6: true, ..request })?);
    }
    plan.interfaces.insert(v2.name().to_string(), origin);
    plan.desired.insert(v2);
    Ok(())
}

/// The plan for `s` and the owners' requests; `injecting` false leaves the
/// injection interface out (the agent is stopping and withdraws).
pub fn plan(s: &Settings, requests: &Requests, injecting: bool) -> Plan {
    let mut plan = Plan {
        desired: Desired {
            router_id: Some(s.router_id),
            own_prefixes: s.pod_cidrs.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let config = |key: Option<Item>| Origin {
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
    for o in &requests.interfaces {
        let name = &o.name;
        let key = Item::Interface(name.clone());
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
            owner: o.owner.clone(),
            key: Some(key.clone()),
        };
        if let Err(e) = add(&mut plan, s, o.request(), origin) {
            plan.refused.push((key, e));
        }
    }
    for p in requests.prefixes.iter().filter(|_| injecting) {
        let key = Item::Prefix(p.prefix);
        if p.prefix.addr().is_ipv6() && !s.ipv6 {
            plan.refused.push((
                key,
                "IPv6 prefixes need OSPFv3, which is off (routing.ospf.ipv6)".into(),
            ));
            continue;
        }
        // A PodCIDR asked for again is injected once, as the request.
        plan.prefixes.insert(
            p.prefix,
            Origin {
                owner: p.owner.clone(),
                key: Some(key),
            },
        );
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ospf::requests::{InterfaceWanted, PrefixWanted};
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
            authentication: None,
        }
    }

    fn ospf(owner: &str, interface: &str, area: &str) -> InterfaceWanted {
        InterfaceWanted {
            owner: owner.into(),
            name: interface.into(),
            area: area.into(),
            passive: false,
            cost: 10,
            hello: 10,
            dead: 40,
        }
    }

    fn prefix(owner: &str, p: &str) -> PrefixWanted {
        PrefixWanted {
            owner: owner.into(),
            prefix: p.parse().unwrap(),
        }
    }

    #[test]
    fn the_configuration_s_interfaces_and_the_injection_interface_with_the_pod_cidr() {
        let p = plan(&settings(false), &Requests::default(), true);
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
    fn with_a_key_every_interface_is_signed_and_the_pod_cidrs_are_never_imported() {
        let key = Authentication::new(7, "s3cr3t").unwrap();
        let s = Settings {
            authentication: Some(key.clone()),
            ..settings(true)
        };
        let intents = Requests {
            interfaces: vec![ospf("a", "eth1", "0")],
            ..Default::default()
        };
        let p = plan(&s, &intents, true);
        assert_eq!(p.desired.interfaces.len(), 6);
        assert!(p
            .desired
            .interfaces
            .values()
            .all(|i| i.authentication.as_ref() == Some(&key)));
        assert_eq!(p.desired.own_prefixes, s.pod_cidrs);
        assert!(!format!("{p:?}").contains("s3cr3t"), "the key is never printed");
    }

    #[test]
    fn with_ospfv3_every_interface_is_in_both_versions() {
        let p = plan(&settings(true), &Requests::default(), true);
        assert_eq!(p.desired.interfaces.len(), 4);
        assert!(p.desired.has_v3());
        assert_eq!(p.injected().len(), 2);
    }

    #[test]
    fn intents_add_interfaces_and_prefixes_and_conflicts_are_refused() {
        // In the order of the intents: owner a's (interfaces by name), then b's.
        let intents = Requests {
            interfaces: vec![
                ospf("a", "eth0", "0"),
                ospf("a", "eth1", "0.0.0.1"),
                ospf("b", "bad\nrouter bgp 1", "0"),
                ospf("b", "eth1", "0"),
            ],
            prefixes: vec![prefix("a", "192.0.2.0/24"), prefix("a", "2001:db8::/48")],
        };
        let p = plan(&settings(false), &intents, true);

        let eth1 = &p.desired.interfaces[&(Version::V2, "eth1".to_string())];
        assert_eq!(eth1.area, Ipv4Addr::new(0, 0, 0, 1));
        assert_eq!(p.interfaces["eth1"].owner, "a");
        assert_eq!(
            p.intent_of(&(Version::V2, "eth1".into())),
            Some(&Item::Interface("eth1".into()))
        );
        assert_eq!(
            p.injected(),
            [
                "10.244.1.0/24".parse::<IpNet>().unwrap(),
                "192.0.2.0/24".parse().unwrap()
            ],
            "OSPF prefixes only, IPv4 only without OSPFv3"
        );
        let refused: BTreeMap<String, String> = p.refused.iter().map(|(k, why)| (k.to_string(), why.clone())).collect();
        assert!(
            refused["interface eth0"].contains("from the configuration"),
            "{refused:?}"
        );
        assert!(refused["interface eth1"].contains("held by owner a"), "{refused:?}");
        assert!(
            refused["interface bad\nrouter bgp 1"].contains("interface_name"),
            "{refused:?}"
        );
        assert!(refused["prefix 2001:db8::/48"].contains("OSPFv3"), "{refused:?}");
        assert!(!p.desired.interfaces.keys().any(|(_, n)| n.contains('\n')));
    }

    #[test]
    fn stopping_leaves_the_injection_out() {
        let intents = Requests {
            prefixes: vec![prefix("a", "192.0.2.0/24")],
            ..Default::default()
        };
        let p = plan(&settings(false), &intents, false);
        assert!(p.injected().is_empty());
        assert_eq!(
            p.desired.interfaces.len(),
            1,
            "the uplink stays: the withdrawal has to be flooded"
        );
    }
}
