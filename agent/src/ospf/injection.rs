//! The interface that carries the node's prefixes into OSPF. OSPF
//! advertises the networks of the interfaces in an area, so each injected
//! prefix (the PodCIDR, OSPF prefix intents) is an address on one
//! interface of ours, passive in the area: the prefix's network address
//! with its length, marked `noprefixroute` so the kernel adds no route for
//! it (pods keep their /32 and /128 routes, nothing local changes but
//! that one address). ospfd learns the addresses from zebra and puts them
//! in its router LSA as stub networks: intra-area routes at every other
//! router, in any area type, with no route-map or redistribution.
//!
//! The interface is a `dummy`; where the kernel has no dummy driver, a
//! bridge without ports (always up, it carries nothing).

use crate::addresses::{address_in, AddOptions, Addresses};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::{Handle, LinkBridge, LinkDummy, LinkUnspec};
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
#[error("the OSPF injection interface {interface}: {what}: {error}")]
pub struct InjectionError {
    interface: String,
    what: String,
    error: String,
}

/// The injection interface of a node.
pub struct Injection {
    name: String,
    addresses: Addresses,
}

/// The address that stands for `prefix` on the interface.
pub fn address_of(prefix: &IpNet) -> (IpAddr, u8) {
    (prefix.network(), prefix.prefix_len())
}

fn not_found(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

impl Injection {
    /// Opens a netlink connection (on the current runtime) for the
    /// interface `name`.
    pub fn new(name: &str) -> std::io::Result<Injection> {
        Ok(Injection {
            name: name.to_string(),
            addresses: Addresses::new()?,
        })
    }

    fn handle(&self) -> &Handle {
        self.addresses.handle()
    }

    /// Manages the interface `name` from now on (a reloaded
    /// configuration named another).
    pub fn rename(&mut self, name: &str) {
        self.name = name.to_string();
    }

    fn fail(&self, what: &str) -> impl FnOnce(rtnetlink::Error) -> InjectionError + '_ {
        let what = what.to_string();
        move |e| InjectionError {
            interface: self.name.clone(),
            what,
            error: e.to_string(),
        }
    }

    async fn link(&self) -> Result<Option<LinkMessage>, InjectionError> {
        match self
            .handle()
            .link()
            .get()
            .match_name(self.name.clone())
            .execute()
            .try_next()
            .await
        {
            Ok(l) => Ok(l),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.fail("looking it up")(e)),
        }
    }

    /// The interface, made and up; its index.
    async fn ensure(&self) -> Result<u32, InjectionError> {
        if self.link().await?.is_none() {
            let made = self
                .handle()
                .link()
                .add(LinkDummy::new(&self.name).build())
                .execute()
                .await;
            match made {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EOPNOTSUPP => {
                    tracing::info!(
                        interface = %self.name,
                        "no dummy interfaces in this kernel: the injection interface is a bridge without ports"
                    );
                    self.handle()
                        .link()
                        .add(LinkBridge::new(&self.name).build())
                        .execute()
                        .await
                        .map_err(self.fail("creating it"))?;
                }
                Err(e) => return Err(self.fail("creating it")(e)),
            }
        }
        let link = self.link().await?.ok_or_else(|| InjectionError {
            interface: self.name.clone(),
            what: "after creating it".into(),
            error: "it vanished".into(),
        })?;
        let index = link.header.index;
        self.handle()
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(self.fail("setting it up"))?;
        Ok(index)
    }

    async fn addresses(&self, index: u32) -> Result<Vec<AddressMessage>, InjectionError> {
        self.addresses
            .list(index)
            .await
            .map_err(self.fail("listing its addresses"))
    }

    /// Makes the interface hold exactly the addresses of `prefixes`
    /// (link-local addresses, the kernel's own, stay).
    pub async fn sync(&self, prefixes: &[IpNet]) -> Result<(), InjectionError> {
        let index = self.ensure().await?;
        let want: Vec<(IpAddr, u8)> = prefixes.iter().map(address_of).collect();
        let mut have = Vec::new();
        for m in self.addresses(index).await? {
            let Some(addr) = address_in(&m) else { continue };
            if matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local()) {
                continue;
            }
            let entry = (addr, m.header.prefix_len);
            if want.contains(&entry) {
                have.push(entry);
            } else {
                self.handle()
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(self.fail(&format!("removing {}/{}", entry.0, entry.1)))?;
            }
        }
        for (addr, len) in want.into_iter().filter(|w| !have.contains(w)) {
            let options = AddOptions { no_prefix_route: true };
            self.addresses
                .add(index, addr, len, options)
                .await
                .map_err(self.fail(&format!("adding {addr}/{len}")))?;
        }
        Ok(())
    }

    /// Removes the interface (the agent stops injecting).
    pub async fn remove(&self) -> Result<(), InjectionError> {
        if let Some(link) = self.link().await? {
            match self.handle().link().del(link.header.index).execute().await {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(self.fail("removing it")(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_its_network_address_with_its_length() {
        let p: IpNet = "10.244.1.0/24".parse().unwrap();
        assert_eq!(address_of(&p), ("10.244.1.0".parse().unwrap(), 24));
        let vip: IpNet = "192.0.2.7/32".parse().unwrap();
        assert_eq!(address_of(&vip), ("192.0.2.7".parse().unwrap(), 32));
        let v6: IpNet = "fd00:10:244:1::/64".parse().unwrap();
        assert_eq!(address_of(&v6), ("fd00:10:244:1::".parse().unwrap(), 64));
    }
}
