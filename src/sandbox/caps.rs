//! Taking `CAP_SYS_ADMIN` away from the commands.
//!
//! uid 0 in the sandbox owns its mount namespace, so with `CAP_SYS_ADMIN`
//! a command could remount a read-only store path writable or mount over
//! the root. Without it every `mount` fails; a nested user namespace gets
//! the capability back, but there the sandbox's mounts are locked and stay
//! read-only. The `nix` crate has no `capset`, and pulling in a capability
//! crate for one bit is not worth it, so the two system calls are made here.

use nix::errno::Errno;

/// `CAP_SYS_ADMIN` from linux/capability.h.
const CAP_SYS_ADMIN: u32 = 21;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Removes `CAP_SYS_ADMIN` from the bounding set and from this process's
/// effective, permitted and inheritable sets, so no program it runs can
/// regain it.
pub(super) fn drop_mount_capability() -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
    Errno::result(unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            CAP_SYS_ADMIN as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data have the layout capget(2) documents for
    // version 3, and data has room for the two words it writes.
    Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    let bit = !(1u32 << CAP_SYS_ADMIN);
    data[0].effective &= bit;
    data[0].permitted &= bit;
    data[0].inheritable &= bit;
    // SAFETY: as above; capset only reads the structures.
    Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) }).map(drop)
}
