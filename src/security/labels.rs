//! AppArmor profiles and SELinux labels for the container's program: set
//! on our own /proc/self/attr so the kernel applies them at execve.

use anyhow::{anyhow, Result};

pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Asks for `profile` (AppArmor) and `label` (SELinux) at the next execve.
pub fn set_exec_labels(profile: Option<&str>, label: Option<&str>) -> Result<()> {
    if let Some(p) = profile.filter(|p| !p.is_empty()) {
        let attr = if std::path::Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        std::fs::write(attr, format!("exec {p}"))
            .map_err(|e| anyhow!("process.apparmorProfile {p:?}: {e}"))?;
    }
    if let Some(l) = label.filter(|l| !l.is_empty()) {
        std::fs::write("/proc/self/attr/exec", l)
            .map_err(|e| anyhow!("process.selinuxLabel {l:?}: {e}"))?;
    }
    Ok(())
}
