//! Pod addresses from the node's PodCIDRs, one per family, kept on disk so
//! an agent restart forgets none: a file per assigned address
//! (`DIR/<cidr>/<address>`, holding the attachment and its pod), created
//! exclusively, so two assignments can never take one address. Every
//! operation holds the directory's lock (`DIR/lock`, flock) and the
//! process's own, so concurrent ADDs and DELs, and an old agent still
//! running beside a new one, serialise. Addresses are handed out after the
//! last one given (`DIR/<cidr>/last`), so a released address is not reused
//! at once.

use ipnet::IpNet;
use novanet_proto::cni::{Attachment, Pod};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the file of an assigned address holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub attachment: Attachment,
    #[serde(default)]
    pub pod: Pod,
    #[serde(default)]
    pub host_interface: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in {0}")]
    Exhausted(IpNet),
    #[error("address store {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn store(path: &Path) -> impl FnOnce(std::io::Error) -> IpamError + '_ {
    move |source| IpamError::Store {
        path: path.display().to_string(),
        source,
    }
}

/// The address store of one node.
pub struct Ipam {
    dir: PathBuf,
    cidrs: Vec<IpNet>,
    local: Mutex<()>,
}

/// Holds the directory lock while alive.
struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor this value owns.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Ipam {
    /// Opens (creating) the store for these PodCIDRs.
    pub fn open(dir: &Path, cidrs: &[IpNet]) -> Result<Ipam, IpamError> {
        for c in cidrs {
            let d = dir.join(cidr_dir(c));
            std::fs::create_dir_all(&d).map_err(store(&d))?;
        }
        Ok(Ipam {
            dir: dir.to_path_buf(),
            cidrs: cidrs.iter().map(|c| c.trunc()).collect(),
            local: Mutex::new(()),
        })
    }

    pub fn cidrs(&self) -> &[IpNet] {
        &self.cidrs
    }

    fn lock(&self) -> Result<DirLock, IpamError> {
        let path = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(store(&path))?;
        // SAFETY: flock on a descriptor we own; blocks until granted.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(store(&path)(std::io::Error::last_os_error()));
        }
        Ok(DirLock(f))
    }

    /// Every assignment on disk, with its address.
    fn all(&self) -> Result<Vec<(IpAddr, Assignment)>, IpamError> {
        let mut out = Vec::new();
        for c in &self.cidrs {
            let d = self.dir.join(cidr_dir(c));
            for entry in std::fs::read_dir(&d).map_err(store(&d))? {
                let entry = entry.map_err(store(&d))?;
                let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                    continue;
                };
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                match serde_json::from_str::<Assignment>(&text) {
                    Ok(a) => out.push((ip, a)),
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "unreadable address assignment kept")
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every assignment (for the endpoint view).
    pub fn assignments(&self) -> Result<Vec<(IpAddr, Assignment)>, IpamError> {
        let _p = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let _d = self.lock()?;
        self.all()
    }

    /// The addresses of an attachment, one per PodCIDR: the ones it holds
    /// already (a repeated ADD), or new ones.
    pub fn assign(&self, a: &Assignment) -> Result<Vec<IpAddr>, IpamError> {
        let _p = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let _d = self.lock()?;
        let held: Vec<IpAddr> = self
            .all()?
            .into_iter()
            .filter(|(_, x)| x.attachment == a.attachment)
            .map(|(ip, _)| ip)
            .collect();
        let mut out = Vec::new();
        for c in &self.cidrs {
            if let Some(ip) = held.iter().find(|ip| c.contains(*ip)) {
                out.push(*ip);
                continue;
            }
            match self.take_next(c, a) {
                Ok(ip) => out.push(ip),
                Err(e) => {
                    // Nothing half-assigned: what this call took goes back.
                    for ip in out.iter().filter(|ip| !held.contains(ip)) {
                        let _ = self.remove(ip);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Takes the first free address after the last one given.
    fn take_next(&self, c: &IpNet, a: &Assignment) -> Result<IpAddr, IpamError> {
        let d = self.dir.join(cidr_dir(c));
        let last_path = d.join("last");
        let last: Option<IpAddr> = std::fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|ip| c.contains(ip));
        let body = serde_json::to_vec(a).expect("an assignment serialises");
        for ip in candidates(c, last) {
            let path = d.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(&body).and_then(|_| f.sync_all()).map_err(store(&path))?;
                    write_atomically(&last_path, ip.to_string().as_bytes()).map_err(store(&last_path))?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(store(&path)(e)),
            }
        }
        Err(IpamError::Exhausted(*c))
    }

    /// The addresses an attachment holds.
    pub fn held(&self, att: &Attachment) -> Result<Vec<IpAddr>, IpamError> {
        let _p = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let _d = self.lock()?;
        Ok(self
            .all()?
            .into_iter()
            .filter(|(_, x)| &x.attachment == att)
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Releases an attachment's addresses; returns them with what they
    /// were assigned to (none is fine).
    pub fn release(&self, att: &Attachment) -> Result<Vec<(IpAddr, Assignment)>, IpamError> {
        let _p = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let _d = self.lock()?;
        let mut released = Vec::new();
        for (ip, x) in self.all()? {
            if &x.attachment == att {
                self.remove(&ip)?;
                released.push((ip, x));
            }
        }
        Ok(released)
    }

    /// Releases every attachment not in `valid`; returns those released
    /// with the host interface each had.
    pub fn retain(&self, valid: &[Attachment]) -> Result<Vec<Assignment>, IpamError> {
        let _p = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let _d = self.lock()?;
        let mut released: Vec<Assignment> = Vec::new();
        for (ip, x) in self.all()? {
            if !valid.contains(&x.attachment) {
                self.remove(&ip)?;
                if !released.iter().any(|r| r.attachment == x.attachment) {
                    released.push(x);
                }
            }
        }
        Ok(released)
    }

    fn remove(&self, ip: &IpAddr) -> Result<(), IpamError> {
        for c in self.cidrs.iter().filter(|c| c.contains(ip)) {
            let path = self.dir.join(cidr_dir(c)).join(ip.to_string());
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(store(&path)(e)),
            }
        }
        Ok(())
    }
}

/// `10.244.1.0/24` -> `10.244.1.0_24` (a directory name).
fn cidr_dir(c: &IpNet) -> String {
    c.trunc().to_string().replace('/', "_")
}

/// Writes through a temporary file and a rename: readers see the old
/// content or the new, never a part.
fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

/// The addresses of a PodCIDR pods may have, starting after `last` and
/// wrapping around: not the network address, not the IPv4 broadcast.
fn candidates(c: &IpNet, last: Option<IpAddr>) -> impl Iterator<Item = IpAddr> {
    let (first, count, v4) = match c {
        IpNet::V4(n) => {
            let base = u32::from(n.network()) as u128;
            let size = 1u128 << (32 - n.prefix_len());
            // /31 and /32 have no network or broadcast address to skip.
            if size <= 2 {
                (base, size, true)
            } else {
                (base + 1, size - 2, true)
            }
        }
        IpNet::V6(n) => {
            let base = u128::from(n.network());
            let size = 1u128.checked_shl(128 - n.prefix_len() as u32).unwrap_or(u128::MAX);
            if size <= 1 {
                (base, size, false)
            } else {
                (base + 1, size - 1, false)
            }
        }
    };
    let start = last
        .map(|ip| match ip {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        })
        .filter(|n| *n >= first && *n - first < count)
        .map(|n| n - first + 1)
        .unwrap_or(0);
    // At most a /16's worth of tries: an IPv6 /64 is never walked whole.
    let tries = count.min(1 << 16);
    (0..tries).map(move |i| {
        let n = first + (start + i) % count;
        if v4 {
            IpAddr::V4((n as u32).into())
        } else {
            IpAddr::V6(n.into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("novanet-ipam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn att(id: &str) -> Assignment {
        Assignment {
            attachment: Attachment {
                container_id: id.into(),
                ifname: "eth0".into(),
            },
            pod: Pod::default(),
            host_interface: String::new(),
        }
    }

    #[test]
    fn addresses_are_distinct_kept_and_reused_only_after_release() {
        let d = dir("basic");
        let cidrs: Vec<IpNet> = vec!["10.244.1.0/29".parse().unwrap(), "fd00:244::/120".parse().unwrap()];
        let ipam = Ipam::open(&d, &cidrs).unwrap();
        let a = ipam.assign(&att("a")).unwrap();
        assert_eq!(
            a,
            ["10.244.1.1".parse::<IpAddr>().unwrap(), "fd00:244::1".parse().unwrap()]
        );
        assert_eq!(ipam.assign(&att("a")).unwrap(), a, "a repeated ADD gets the same");
        let mut v4 = vec![a[0]];
        for id in ["b", "c", "d", "e", "f"] {
            v4.push(ipam.assign(&att(id)).unwrap()[0]);
        }
        v4.sort();
        v4.dedup();
        assert_eq!(v4.len(), 6, "a /29 has six pod addresses");
        assert!(matches!(ipam.assign(&att("g")), Err(IpamError::Exhausted(_))));
        // The failed ADD took no IPv6 address either.
        assert!(ipam.held(&att("g").attachment).unwrap().is_empty());
        // A new store on the same directory (an agent restart) knows them.
        let again = Ipam::open(&d, &cidrs).unwrap();
        assert_eq!(again.held(&att("c").attachment).unwrap().len(), 2);
        let freed: Vec<IpAddr> = again
            .release(&att("c").attachment)
            .unwrap()
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        assert_eq!(freed.len(), 2);
        assert!(
            again.release(&att("c").attachment).unwrap().is_empty(),
            "DEL twice is fine"
        );
        let g = again.assign(&att("g")).unwrap();
        assert!(
            g.contains(&freed[0]) || g.contains(&freed[1]),
            "the freed IPv4 address is the one left"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn concurrent_assignments_never_share_an_address() {
        let d = dir("concurrent");
        let cidrs: Vec<IpNet> = vec!["10.244.2.0/24".parse().unwrap()];
        let ipam = std::sync::Arc::new(Ipam::open(&d, &cidrs).unwrap());
        // Two stores on one directory, as two processes would be.
        let other = std::sync::Arc::new(Ipam::open(&d, &cidrs).unwrap());
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let s = if i % 2 == 0 { ipam.clone() } else { other.clone() };
                std::thread::spawn(move || s.assign(&att(&format!("c{i}"))).unwrap()[0])
            })
            .collect();
        let mut got: Vec<IpAddr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 32);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn gc_keeps_only_the_valid_attachments() {
        let d = dir("gc");
        let ipam = Ipam::open(&d, &["10.244.3.0/24".parse().unwrap()]).unwrap();
        for id in ["a", "b", "c"] {
            ipam.assign(&att(id)).unwrap();
        }
        let released = ipam.retain(&[att("b").attachment]).unwrap();
        let mut ids: Vec<_> = released.iter().map(|r| r.attachment.container_id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(ipam.assignments().unwrap().len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
