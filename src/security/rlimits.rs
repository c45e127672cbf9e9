//! process.rlimits → setrlimit(2), with errors that name the limit.

use anyhow::{bail, Result};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

pub fn resource_of(t: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

fn name_of(t: PosixRlimitType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

pub fn apply(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        let res = resource_of(l.typ());
        if l.soft() > l.hard() {
            bail!(
                "process.rlimits: {} soft limit {} is above its hard limit {}",
                name_of(l.typ()),
                l.soft(),
                l.hard()
            );
        }
        if let Err(e) = setrlimit(res, l.soft(), l.hard()) {
            let current = getrlimit(res).map(|(_, h)| h).unwrap_or(0);
            let hint = if e == nix::errno::Errno::EPERM && l.hard() > current {
                format!(" (the hard limit here is {current}; raising it needs CAP_SYS_RESOURCE)")
            } else {
                String::new()
            };
            bail!(
                "process.rlimits: setting {} to {}:{}: {e}{hint}",
                name_of(l.typ()),
                l.soft(),
                l.hard()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_spec() {
        assert_eq!(name_of(PosixRlimitType::RlimitNofile), "RLIMIT_NOFILE");
        assert_eq!(
            resource_of(PosixRlimitType::RlimitNofile),
            Resource::RLIMIT_NOFILE
        );
    }
}
