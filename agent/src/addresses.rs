//! Addresses on the node's own interfaces, written through rtnetlink: the
//! control-plane VIP on `lo` and the OSPF injection interface's prefixes.
//! (Routes are the FIB writer's, in `novanet-fib`.)

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use rtnetlink::Handle;
use std::net::IpAddr;

/// A netlink connection for address writes, on the current runtime.
#[derive(Clone)]
pub struct Addresses {
    handle: Handle,
}

/// How an address is added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddOptions {
    /// No prefix route for it (the address stands for a network elsewhere).
    pub no_prefix_route: bool,
}

fn code(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// The interface address of an address message: IFA_LOCAL (the
/// interface's own address), else IFA_ADDRESS (the same but on
/// point-to-point links).
pub fn address_in(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

impl Addresses {
    /// Opens the connection; its task runs on the current runtime.
    pub fn new() -> std::io::Result<Addresses> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Addresses { handle })
    }

    /// The link's handle, for what else the caller does with links.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The index of the interface `name`, if it exists.
    pub async fn index_of(&self, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
        match self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
        {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) if code(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The addresses of the interface `index`.
    pub async fn list(&self, index: u32) -> Result<Vec<AddressMessage>, rtnetlink::Error> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
    }

    /// Adds `addr/len` to the interface `index`; one already there is
    /// left as it is.
    pub async fn add(&self, index: u32, addr: IpAddr, len: u8, options: AddOptions) -> Result<(), rtnetlink::Error> {
        let mut add = self.handle.address().add(index, addr, len);
        let m = add.message_mut();
        let mut flags = AddressFlags::empty();
        if addr.is_ipv6() {
            m.header.flags |= AddressHeaderFlags::Nodad;
            flags |= AddressFlags::Nodad;
        }
        if options.no_prefix_route {
            flags |= AddressFlags::Noprefixroute;
        }
        if !flags.is_empty() {
            m.attributes.push(AddressAttribute::Flags(flags));
        }
        match add.execute().await {
            Err(e) if code(&e) == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Removes `addr/len` from the interface `index`; one already gone is
    /// fine.
    pub async fn remove(&self, index: u32, addr: IpAddr, len: u8) -> Result<(), rtnetlink::Error> {
        for m in self.list(index).await? {
            if address_in(&m) == Some(addr) && m.header.prefix_len == len {
                match self.handle.address().del(m).execute().await {
                    Err(e) if code(&e) == Some(libc::EADDRNOTAVAIL) => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }
}
