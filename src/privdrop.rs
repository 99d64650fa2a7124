//! Least privilege: after the capture handle and the outputs are open, become an unprivileged
//! user and keep no capabilities.
//!
//! Owns the only `unsafe` of the daemon: the libc calls that change credentials
//! (setgroups/setresgid/setresuid, capset, prctl). Opening a packet socket needs CAP_NET_RAW
//! (and CAP_NET_ADMIN for promiscuous mode and large buffers); reading from an open one needs
//! nothing, so everything that parses hostile bytes runs without privileges. The result is
//! checked, not assumed: the effective, permitted and ambient capability sets read back from
//! `/proc/self/status` must be empty.
#![allow(unsafe_code)]

use std::ffi::CString;

/// Why the switch failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    /// No such user.
    #[error("no user named {0:?} (create it, e.g. `useradd --system --no-create-home apitap`)")]
    NoUser(String),
    /// A credential call failed.
    #[error("{call} failed: {source}")]
    Call {
        /// The call.
        call: &'static str,
        /// errno.
        source: std::io::Error,
    },
    /// Capabilities survived.
    #[error("capabilities still held after the switch ({0}); refusing to run with them")]
    StillPrivileged(String),
}

fn check(call: &'static str, r: libc::c_int) -> Result<(), PrivError> {
    if r == 0 {
        Ok(())
    } else {
        Err(PrivError::Call {
            call,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// uid and gid of `user` (a name or a numeric uid).
fn lookup(user: &str) -> Result<(libc::uid_t, libc::gid_t), PrivError> {
    let name = CString::new(user).map_err(|_| PrivError::NoUser(user.into()))?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of pwd's strings (we
    // read only the numeric ids).
    let r = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if r == 0 && !out.is_null() {
        return Ok((pwd.pw_uid, pwd.pw_gid));
    }
    if let Ok(uid) = user.parse::<libc::uid_t>() {
        return Ok((uid, uid));
    }
    Err(PrivError::NoUser(user.into()))
}

/// Switches to `user` and drops every capability.
pub fn drop_to(user: &str) -> Result<(), PrivError> {
    let (uid, gid) = lookup(user)?;
    // SAFETY: plain syscalls on the calling process's credentials.
    unsafe {
        check(
            "prctl(PR_SET_KEEPCAPS, 0)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
        )?;
        if libc::geteuid() == 0 {
            check("setgroups", libc::setgroups(1, &gid))?;
        }
        if libc::getegid() != gid || libc::getgid() != gid {
            check("setresgid", libc::setresgid(gid, gid, gid))?;
        }
        if libc::geteuid() != uid || libc::getuid() != uid {
            check("setresuid", libc::setresuid(uid, uid, uid))?;
        }
        // Capabilities from file capabilities or an ambient set survive a same-uid "switch":
        // clear them explicitly.
        clear_capabilities()?;
        check(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        )?;
    }
    let held = held_capabilities();
    if held.is_empty() {
        Ok(())
    } else {
        Err(PrivError::StillPrivileged(held.join(", ")))
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

unsafe fn clear_capabilities() -> Result<(), PrivError> {
    check(
        "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ),
    )?;
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    let r = libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr());
    check("capset", if r == 0 { 0 } else { -1 })
}

/// Non-empty capability sets of this process, as `CapEff=…` strings.
pub fn held_capabilities() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.trim();
            (matches!(k, "CapEff" | "CapPrm" | "CapAmb")
                && u64::from_str_radix(v, 16).is_ok_and(|n| n != 0))
            .then(|| format!("{k}={v}"))
        })
        .collect()
}
