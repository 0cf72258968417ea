//! Typed OSPF configuration and the vtysh lines it becomes. Values are
//! validated when the types are built ([`crate::validate`]), so rendering
//! cannot put anything but a checked value into a line.

use crate::validate::{self, Invalid};
use ipnet::IpNet;
use std::net::Ipv4Addr;

/// Which OSPF: v2 (ospfd, IPv4) or v3 (ospf6d, IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    /// What interface commands of this version start with.
    fn interface_prefix(self) -> &'static str {
        match self {
            Version::V2 => "ip ospf",
            Version::V3 => "ipv6 ospf6",
        }
    }

    /// `ospfv2` / `ospfv3`, as events and status name it.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2 => "ospfv2",
            Version::V3 => "ospfv3",
        }
    }
}

/// The key every OSPF packet of an interface is signed with: OSPFv2
/// cryptographic authentication (MD5, RFC 2328 appendix D), OSPFv3's
/// authentication trailer (HMAC-SHA-256, RFC 7166). Neighbours without the
/// key form no adjacency.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Authentication {
    key_id: u8,
    key: String,
}

impl Authentication {
    pub fn new(key_id: u32, key: &str) -> Result<Authentication, Invalid> {
        Ok(Authentication {
            key_id: validate::key_id(key_id)?,
            key: validate::key(key)?,
        })
    }
}

impl Authentication {
    /// `e` with the key replaced wherever FRR's answer repeats it.
    pub fn redact(&self, e: crate::vtysh::VtyError) -> crate::vtysh::VtyError {
        use crate::vtysh::VtyError::*;
        let hide = |t: String| t.replace(&self.key, "<key>");
        match e {
            Spawn(t) => Spawn(hide(t)),
            Refused(t) => Refused(hide(t)),
            Unreadable(t) => Unreadable(hide(t)),
            Failed { code, output } => Failed {
                code,
                output: hide(output),
            },
        }
    }
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authentication {{ key_id: {}, key: <hidden> }}", self.key_id)
    }
}

/// An interface in an OSPF area.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interface {
    name: String,
    pub version: Version,
    pub area: Ipv4Addr,
    pub passive: bool,
    pub cost: Option<u16>,
    pub hello: Option<u16>,
    pub dead: Option<u16>,
    /// Set by the node's configuration, never by a request.
    pub authentication: Option<Authentication>,
}

/// What an EnableOSPF request carries, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceRequest<'a> {
    pub name: &'a str,
    pub area: &'a str,
    pub passive: bool,
    pub cost: u32,
    pub hello: u32,
    pub dead: u32,
    pub ipv6: bool,
}

impl InterfaceRequest<'_> {
    /// The request with RouteControl's defaults for what it leaves at 0:
    /// cost 10, hello 10 s, dead 40 s.
    pub fn with_defaults(self) -> Self {
        let or = |v: u32, d: u32| if v == 0 { d } else { v };
        InterfaceRequest {
            cost: or(self.cost, 10),
            hello: or(self.hello, 10),
            dead: or(self.dead, 40),
            ..self
        }
    }
}

impl Interface {
    /// Validates a request; the first problem is the error.
    pub fn new(r: &InterfaceRequest) -> Result<Interface, Invalid> {
        let name = validate::interface(r.name)?;
        let area = validate::area(r.area)?;
        let cost = validate::cost(r.cost)?;
        let hello = validate::interval("hello_interval", r.hello)?;
        let dead = validate::interval("dead_interval", r.dead)?;
        validate::timers(hello, dead)?;
        Ok(Interface {
            name,
            version: if r.ipv6 { Version::V3 } else { Version::V2 },
            area,
            passive: r.passive,
            cost,
            hello,
            dead,
            authentication: None,
        })
    }

    /// The interface with its packets signed with `auth`.
    pub fn signed(self, auth: Option<Authentication>) -> Interface {
        Interface {
            authentication: auth,
            ..self
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn prefix(&self) -> &'static str {
        self.version.interface_prefix()
    }

    /// The lines that put the interface into its area with its settings.
    /// The timers come before the area: the interface comes up in OSPF
    /// when the area is set, and its wait timer (the DR election) is the
    /// dead interval of that moment — set after, a shorter dead interval
    /// would leave it Waiting for the default 40 s.
    pub fn enable_lines(&self) -> Vec<String> {
        let p = self.prefix();
        let mut l = vec![format!("interface {}", self.name)];
        if let Some(c) = self.cost {
            l.push(format!(" {p} cost {c}"));
        }
        if let Some(h) = self.hello {
            l.push(format!(" {p} hello-interval {h}"));
        }
        if let Some(d) = self.dead {
            l.push(format!(" {p} dead-interval {d}"));
        }
        if self.passive {
            l.push(format!(" {p} passive"));
        }
        // Signed before the interface joins the area: not one hello leaves
        // it unsigned.
        if let Some(a) = &self.authentication {
            match self.version {
                Version::V2 => {
                    l.push(" ip ospf authentication message-digest".into());
                    l.push(format!(" ip ospf message-digest-key {} md5 {}", a.key_id, a.key));
                }
                Version::V3 => l.push(format!(
                    " ipv6 ospf6 authentication key-id {} hash-algo hmac-sha-256 key {}",
                    a.key_id, a.key
                )),
            }
        }
        l.push(format!(" {p} area {}", self.area));
        l.push("exit".into());
        l
    }

    /// The lines that take the interface out of OSPF again.
    pub fn disable_lines(&self) -> Vec<String> {
        let p = self.prefix();
        let mut l = vec![format!("interface {}", self.name), format!(" no {p} area")];
        for (set, what) in [
            (self.cost.is_some(), "cost"),
            (self.hello.is_some(), "hello-interval"),
            (self.dead.is_some(), "dead-interval"),
            (self.passive, "passive"),
        ] {
            if set {
                l.push(format!(" no {p} {what}"));
            }
        }
        if let Some(a) = &self.authentication {
            match self.version {
                Version::V2 => {
                    l.push(" no ip ospf authentication".into());
                    l.push(format!(" no ip ospf message-digest-key {}", a.key_id));
                }
                Version::V3 => l.push(format!(
                    " no ipv6 ospf6 authentication key-id {} hash-algo hmac-sha-256 key {}",
                    a.key_id, a.key
                )),
            }
        }
        l.push("exit".into());
        l
    }
}

/// Names of the route maps and prefix lists zebra filters OSPF routes with.
const OWN_V4: &str = "NOVANET-OSPF-OWN";
const OWN_V6: &str = "NOVANET-OSPF6-OWN";
const IMPORT_V4: &str = "NOVANET-OSPF-IMPORT";
const IMPORT_V6: &str = "NOVANET-OSPF6-IMPORT";

/// The lines that keep zebra from installing an OSPF route into, or
/// inside, any of `own` (the node's PodCIDRs): whatever a neighbour
/// floods, this node's pods stay reached through this node. Every other
/// OSPF route is installed as before. The prefix lists are written anew,
/// so one left by an earlier agent cannot linger.
pub fn import_filter_lines(own: &[IpNet]) -> Vec<String> {
    let mut l = Vec::new();
    for (v6, list, map, protocol, matcher) in [
        (
            false,
            OWN_V4,
            IMPORT_V4,
            "ip protocol ospf",
            "match ip address prefix-list",
        ),
        (
            true,
            OWN_V6,
            IMPORT_V6,
            "ipv6 protocol ospf6",
            "match ipv6 address prefix-list",
        ),
    ] {
        let family: Vec<&IpNet> = own.iter().filter(|p| p.addr().is_ipv6() == v6).collect();
        if family.is_empty() {
            continue;
        }
        let ip = if v6 { "ipv6" } else { "ip" };
        l.push(format!("no {ip} prefix-list {list}"));
        for (i, p) in family.iter().enumerate() {
            l.push(format!(
                "{ip} prefix-list {list} seq {} permit {p} le {}",
                (i + 1) * 5,
                p.max_prefix_len()
            ));
        }
        l.extend([
            format!("route-map {map} deny 10"),
            format!(" {matcher} {list}"),
            "exit".into(),
            format!("route-map {map} permit 20"),
            "exit".into(),
            format!("{protocol} route-map {map}"),
        ]);
    }
    l
}

/// The lines that take an interface whose settings are not known (left in
/// the sidecar by an earlier agent) out of OSPF: every setting the bridge
/// writes, removed. `name` must have passed [`validate::interface`].
pub fn clear_lines(version: Version, name: &str) -> Vec<String> {
    let p = version.interface_prefix();
    let mut l = vec![format!("interface {name}"), format!(" no {p} area")];
    for what in ["cost", "hello-interval", "dead-interval", "passive"] {
        l.push(format!(" no {p} {what}"));
    }
    l.push("exit".into());
    l
}

/// The router's OSPF instance and its id.
pub fn router_lines(version: Version, router_id: Ipv4Addr) -> Vec<String> {
    match version {
        Version::V2 => vec![
            "router ospf".into(),
            format!(" ospf router-id {router_id}"),
            "exit".into(),
        ],
        Version::V3 => vec![
            "router ospf6".into(),
            format!(" ospf6 router-id {router_id}"),
            "exit".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str) -> InterfaceRequest<'_> {
        InterfaceRequest {
            name,
            area: "0",
            ..Default::default()
        }
    }

    #[test]
    fn interfaces_render_into_ospfd_and_ospf6d_lines() {
        let i = Interface::new(&InterfaceRequest {
            passive: true,
            cost: 10,
            hello: 1,
            dead: 4,
            ..req("eth0")
        })
        .unwrap();
        assert_eq!(
            i.enable_lines(),
            [
                "interface eth0",
                " ip ospf cost 10",
                " ip ospf hello-interval 1",
                " ip ospf dead-interval 4",
                " ip ospf passive",
                " ip ospf area 0.0.0.0",
                "exit"
            ]
        );
        assert_eq!(
            i.disable_lines(),
            [
                "interface eth0",
                " no ip ospf area",
                " no ip ospf cost",
                " no ip ospf hello-interval",
                " no ip ospf dead-interval",
                " no ip ospf passive",
                "exit"
            ]
        );
        let v6 = Interface::new(&InterfaceRequest {
            ipv6: true,
            area: "1",
            ..req("eth1")
        })
        .unwrap();
        assert_eq!(
            v6.enable_lines(),
            ["interface eth1", " ipv6 ospf6 area 0.0.0.1", "exit"]
        );
        assert_eq!(
            router_lines(Version::V2, "10.0.0.1".parse().unwrap())[1],
            " ospf router-id 10.0.0.1"
        );
    }

    #[test]
    fn a_signed_interface_is_keyed_before_it_joins_the_area_and_unkeyed_when_it_leaves() {
        let auth = Authentication::new(3, "k3y").unwrap();
        let v2 = Interface::new(&req("eth0")).unwrap().signed(Some(auth.clone()));
        assert_eq!(
            v2.enable_lines(),
            [
                "interface eth0",
                " ip ospf authentication message-digest",
                " ip ospf message-digest-key 3 md5 k3y",
                " ip ospf area 0.0.0.0",
                "exit"
            ]
        );
        assert_eq!(
            v2.disable_lines(),
            [
                "interface eth0",
                " no ip ospf area",
                " no ip ospf authentication",
                " no ip ospf message-digest-key 3",
                "exit"
            ]
        );
        let v3 = Interface::new(&InterfaceRequest {
            ipv6: true,
            ..req("eth0")
        })
        .unwrap()
        .signed(Some(auth.clone()));
        assert_eq!(
            v3.enable_lines()[1],
            " ipv6 ospf6 authentication key-id 3 hash-algo hmac-sha-256 key k3y"
        );
        assert_eq!(format!("{auth:?}"), "Authentication { key_id: 3, key: <hidden> }");
        let refused = auth.redact(crate::vtysh::VtyError::Refused("% Unknown command: md5 k3y".into()));
        assert_eq!(
            refused.to_string(),
            "FRR refused the configuration: % Unknown command: md5 <key>"
        );
    }

    #[test]
    fn the_import_filter_refuses_the_pod_cidrs_and_what_lies_inside_them() {
        let own: Vec<IpNet> = vec!["10.244.1.0/24".parse().unwrap(), "fd00:1::/64".parse().unwrap()];
        let l = import_filter_lines(&own);
        assert_eq!(
            l,
            [
                "no ip prefix-list NOVANET-OSPF-OWN",
                "ip prefix-list NOVANET-OSPF-OWN seq 5 permit 10.244.1.0/24 le 32",
                "route-map NOVANET-OSPF-IMPORT deny 10",
                " match ip address prefix-list NOVANET-OSPF-OWN",
                "exit",
                "route-map NOVANET-OSPF-IMPORT permit 20",
                "exit",
                "ip protocol ospf route-map NOVANET-OSPF-IMPORT",
                "no ipv6 prefix-list NOVANET-OSPF6-OWN",
                "ipv6 prefix-list NOVANET-OSPF6-OWN seq 5 permit fd00:1::/64 le 128",
                "route-map NOVANET-OSPF6-IMPORT deny 10",
                " match ipv6 address prefix-list NOVANET-OSPF6-OWN",
                "exit",
                "route-map NOVANET-OSPF6-IMPORT permit 20",
                "exit",
                "ipv6 protocol ospf6 route-map NOVANET-OSPF6-IMPORT",
            ]
        );
        assert!(import_filter_lines(&[]).is_empty());
    }

    #[test]
    fn what_a_request_leaves_out_takes_routecontrol_s_defaults() {
        let r = req("eth0").with_defaults();
        assert_eq!((r.cost, r.hello, r.dead), (10, 10, 40));
        let set = InterfaceRequest {
            cost: 5,
            hello: 1,
            dead: 3,
            ..req("eth0")
        }
        .with_defaults();
        assert_eq!((set.cost, set.hello, set.dead), (5, 1, 3));
    }

    #[test]
    fn nothing_unchecked_becomes_a_line() {
        let smuggled = Interface::new(&req("eth0\nrouter bgp 1")).unwrap_err();
        assert_eq!(smuggled.field, "interface_name");
        let area = Interface::new(&InterfaceRequest {
            area: "0\n exit",
            ..req("eth0")
        })
        .unwrap_err();
        assert_eq!(area.field, "area_id");
    }
}
