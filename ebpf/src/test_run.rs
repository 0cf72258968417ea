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
