//! The flags a bind remount must carry inside a user namespace: the kernel
//! locks the nosuid/nodev/noexec and atime flags a mount inherited, and
//! refuses a remount that would clear them.

use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;

/// musl's headers lack ST_RELATIME; the kernel's value is stable.
const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(0x1000);

/// The MS_* flags to keep, from the mount's raw ST_* flags. With
/// `explicit_atime` the mount asked for an atime mode of its own, so the
/// old one is not carried over.
pub fn locked_flags(raw: u64, explicit_atime: bool) -> MsFlags {
    let f = FsFlags::from_bits_retain(raw);
    let mut out = MsFlags::empty();
    for (st_flag, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(st_flag) {
            out |= ms;
        }
    }
    if !explicit_atime {
        if f.contains(FsFlags::ST_NOATIME) {
            out |= MsFlags::MS_NOATIME;
        } else if f.contains(ST_RELATIME) {
            out |= MsFlags::MS_RELATIME;
        } else {
            out |= MsFlags::MS_STRICTATIME;
        }
        if f.contains(FsFlags::ST_NODIRATIME) {
            out |= MsFlags::MS_NODIRATIME;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_flags_are_carried_over() {
        let raw = (FsFlags::ST_NOSUID | FsFlags::ST_NODEV).bits() | ST_RELATIME.bits();
        assert_eq!(
            locked_flags(raw, false),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RELATIME
        );
        // An atime option of the mount's own replaces the inherited mode.
        assert_eq!(
            locked_flags(raw, true),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        let raw = (FsFlags::ST_NOEXEC | FsFlags::ST_NOATIME | FsFlags::ST_NODIRATIME).bits();
        assert_eq!(
            locked_flags(raw, false),
            MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME | MsFlags::MS_NODIRATIME
        );
        // Neither noatime nor relatime: strictatime.
        assert_eq!(locked_flags(0, false), MsFlags::MS_STRICTATIME);
    }
}
