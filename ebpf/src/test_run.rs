//! Runs a loaded program once on a crafted packet (`BPF_PROG_TEST_RUN`):
//! its return value and how long it took, as the kernel measures it. aya
//! does not offer this, so the syscall is made here.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// What one run gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The program's return value (for TC: 0 pass, 2 drop).
    pub retval: u32,
    /// Nanoseconds per run, averaged over `repeat` runs by the kernel.
    pub duration_ns: u32,
}

/// Runs `prog` on `packet` (a whole Ethernet frame) `repeat` times.
pub fn run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> std::io::Result<Run> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: repeat.max(1),
        ..Default::default()
    };
    // SAFETY: the bpf(2) syscall with an attribute of the layout the kernel
    // reads for this command; `packet` outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Run {
        retval: attr.retval,
        duration_ns: attr.duration,
    })
}

/// A crafted Ethernet frame for test runs: an IPv4 or IPv6 header from
/// `src` to `dst` and, for TCP/UDP/SCTP, the ports (the rest of the L4
/// header zero), padded so every header the programs read is there.
pub fn frame(src: std::net::IpAddr, dst: std::net::IpAddr, protocol: u8, sport: u16, dport: u16) -> Vec<u8> {
    use std::net::IpAddr;
    let mut p = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x08, 0x00]);
            p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, protocol, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x86, 0xdd]);
            p.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, protocol, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("a frame has one address family"),
    }
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.resize(p.len().max(64) + 16, 0);
    p
}
