//! The two `bpf(2)` calls the device filter needs: load a `BPF_PROG_TYPE_CGROUP_DEVICE` program, attach it
//! to a cgroup v2 directory. The attachment keeps the program alive; it goes with the cgroup.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::device_filter::Insn;
use crate::error::{Error, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs of the parent cgroups (systemd's DevicePolicy for the engine's unit) keep running too.
const BPF_F_ALLOW_MULTI: u32 = 2;
const LOG_SIZE: usize = 64 * 1024;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i32> {
    // SAFETY: `attr` is a live, fully initialised `union bpf_attr` member of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// Loads `program` and attaches it to the cgroup directory `dir`.
pub(super) fn attach_device_program(dir: &Path, program: &[Insn]) -> Result<()> {
    let prog = load(program)?;
    let cgroup = File::open(dir).map_err(|e| Error::io_path("open cgroup", dir, e))?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| Error::io(format!("attach the device filter (eBPF) to cgroup {}", dir.display()), e))?;
    Ok(())
}

fn load(program: &[Insn]) -> Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"balena_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(program.len()).map_err(|_| Error::invalid("device filter too long"))?,
        insns: program.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let first = match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => e,
    };
    // Once more with the verifier's log, for the error message.
    let mut log = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    let _ = bpf(BPF_PROG_LOAD, &mut attr);
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let hint = match first.raw_os_error() {
        Some(libc::EPERM) => " (needs CAP_SYS_ADMIN or CAP_BPF)",
        Some(libc::EINVAL) | Some(libc::ENOSYS) => " (the kernel needs CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF)",
        _ => "",
    };
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(Error::io(format!("load the cgroup v2 device filter (eBPF){hint}{}", if last.is_empty() { String::new() } else { format!(": verifier: {last}") }), first))
}
