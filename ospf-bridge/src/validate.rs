//! What may reach vtysh. Each check returns the value in the form FRR is
//! given, or an error that names the field and what is wrong with it.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        field,
        problem: problem.into(),
    }
}

/// An interface name as the kernel takes it: 1 to 15 bytes of printable
/// ASCII, none of `/`, `:`, whitespace; not `.` or `..`.
pub fn interface(name: &str) -> Result<String, Invalid> {
    let field = "interface_name";
    if name.is_empty() || name.len() > 15 {
        return Err(invalid(field, format!("{name:?} is not 1-15 bytes long")));
    }
    if name == "." || name == ".." {
        return Err(invalid(field, format!("{name:?} is not an interface name")));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '/' | ':')) {
        return Err(invalid(
            field,
            format!("{name:?} holds {c:?}: names are printable ASCII without whitespace, '/' or ':'"),
        ));
    }
    Ok(name.to_string())
}

/// An OSPF area: dotted quad, or a 32-bit integer (rendered dotted).
pub fn area(text: &str) -> Result<Ipv4Addr, Invalid> {
    let field = "area_id";
    if let Ok(a) = text.parse::<Ipv4Addr>() {
        return Ok(a);
    }
    text.parse::<u32>()
        .map(Ipv4Addr::from)
        .map_err(|_| invalid(field, format!("{text:?} is neither a dotted quad nor a 32-bit number")))
}

/// An interface cost (1-65535; 0 means "leave FRR's default").
pub fn cost(n: u32) -> Result<Option<u16>, Invalid> {
    match n {
        0 => Ok(None),
        1..=65535 => Ok(Some(n as u16)),
        _ => Err(invalid("cost", format!("{n} is not 1-65535"))),
    }
}

/// A hello or dead interval in seconds (1-65535; 0: FRR's default).
pub fn interval(field: &'static str, n: u32) -> Result<Option<u16>, Invalid> {
    match n {
        0 => Ok(None),
        1..=65535 => Ok(Some(n as u16)),
        _ => Err(invalid(field, format!("{n} seconds is not 1-65535"))),
    }
}

/// Hello and dead intervals together (0: FRR's defaults, 10 s and 40 s):
/// a neighbor is declared dead no sooner than one hello is due.
pub fn timers(hello: Option<u16>, dead: Option<u16>) -> Result<(), Invalid> {
    let (h, d) = (hello.unwrap_or(10), dead.unwrap_or(40));
    if d < h {
        return Err(invalid(
            "dead_interval",
            format!("{d} seconds is below the hello interval ({h} seconds)"),
        ));
    }
    Ok(())
}

/// A router id: a unicast IPv4 address, not 0.0.0.0.
pub fn router_id(text: &str) -> Result<Ipv4Addr, Invalid> {
    let a: Ipv4Addr = text
        .parse()
        .map_err(|_| invalid("router_id", format!("{text:?} is not an IPv4 address")))?;
    if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
        return Err(invalid("router_id", format!("{a} is not a unicast address")));
    }
    Ok(a)
}

/// An OSPF authentication key: 1 to 16 printable ASCII characters without
/// whitespace (OSPFv2's MD5 key is 16 bytes; FRR takes the key as one
/// word).
pub fn key(text: &str) -> Result<String, Invalid> {
    let field = "authentication key";
    if text.is_empty() || text.len() > 16 {
        return Err(invalid(field, format!("is {} bytes long, not 1-16", text.len())));
    }
    if !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(
            field,
            "holds a character that is not printable ASCII or is whitespace",
        ));
    }
    Ok(text.to_string())
}

/// An OSPF authentication key id (1-255).
pub fn key_id(n: u32) -> Result<u8, Invalid> {
    match n {
        1..=255 => Ok(n as u8),
        _ => Err(invalid("authentication_key_id", format!("{n} is not 1-255"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_word_and_never_echoed() {
        assert_eq!(key("s3cr3t-K3y!").unwrap(), "s3cr3t-K3y!");
        for bad in ["", "seventeen-bytes!!", "two words", "line\nexit", "tab\t"] {
            let e = key(bad).unwrap_err();
            assert!(!e.to_string().contains(bad) || bad.is_empty(), "{e}");
        }
        assert_eq!(key_id(1).unwrap(), 1);
        assert!(key_id(0).is_err() && key_id(256).is_err());
    }

    #[test]
    fn interface_names_follow_the_kernel() {
        for ok in ["eth0", "ens3f0", "bond0.100", "vlan-10", "nv1a2b3c4d5e6"] {
            assert_eq!(interface(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "abcdefghijklmnop",
            ".",
            "..",
            "eth0\nrouter bgp 1",
            "eth0 passive",
            "eth\t0",
            "a/b",
            "a:b",
            "eth0\u{7f}",
            "ethé",
        ] {
            let e = interface(bad).unwrap_err();
            assert_eq!(e.field, "interface_name", "{bad:?}");
        }
    }

    #[test]
    fn areas_numbers_and_router_ids() {
        assert_eq!(area("0").unwrap(), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(area("0.0.0.1").unwrap(), Ipv4Addr::new(0, 0, 0, 1));
        assert_eq!(area("4294967295").unwrap(), Ipv4Addr::new(255, 255, 255, 255));
        for bad in ["", "-1", "4294967296", "0.0.0", "0\nexit", "backbone"] {
            assert!(area(bad).is_err(), "{bad:?}");
        }
        assert_eq!(cost(0).unwrap(), None);
        assert_eq!(cost(10).unwrap(), Some(10));
        assert!(cost(70000).is_err());
        assert_eq!(interval("hello_interval", 1).unwrap(), Some(1));
        assert!(interval("dead_interval", 65536).unwrap_err().problem.contains("65536"));
        assert!(timers(Some(1), Some(3)).is_ok());
        assert!(timers(None, None).is_ok());
        assert_eq!(timers(Some(5), Some(4)).unwrap_err().field, "dead_interval");
        assert!(timers(None, Some(9)).is_err(), "below the default hello of 10 s");
        assert!(router_id("10.0.0.1").is_ok());
        for bad in ["0.0.0.0", "224.0.0.5", "255.255.255.255", "fd00::1", "10.0.0.1\n"] {
            assert!(router_id(bad).is_err(), "{bad:?}");
        }
    }
}
