//! Typed OSPF configuration and the vtysh lines it becomes. Values are
//! validated when the types are built ([`crate::validate`]), so rendering
//! cannot put anything but a checked value into a line.

use crate::validate::{self, Invalid};
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
        })
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
        l.push("exit".into());
        l
    }
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
