//! Switching to process.user: groups, gid, uid, umask.

use anyhow::{anyhow, Result};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

pub fn switch(user: &User) -> Result<()> {
    let uid = Uid::from_raw(user.uid());
    let gid = Gid::from_raw(user.gid());
    let extra: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // In a user namespace whose setgroups is denied (an unprivileged map),
    // the supplementary groups cannot change; only asking for some is an
    // error then.
    let setgroups_denied = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "deny")
        .unwrap_or(false);
    if !extra.is_empty() || !setgroups_denied {
        setgroups(&extra).map_err(|e| {
            anyhow!(
                "process.user.additionalGids {:?}: setgroups: {e}",
                user.additional_gids()
            )
        })?;
    }
    setresgid(gid, gid, gid).map_err(|e| {
        anyhow!("process.user.gid {gid}: setresgid: {e} (is it mapped in the user namespace?)")
    })?;
    setresuid(uid, uid, uid).map_err(|e| {
        anyhow!("process.user.uid {uid}: setresuid: {e} (is it mapped in the user namespace?)")
    })?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}
