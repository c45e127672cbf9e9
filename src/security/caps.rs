//! The five capability sets of process.capabilities. The bounding set is cut
//! while we still hold CAP_SETPCAP, the others after the switch of user
//! (with keep-caps on, so switching uid does not wipe them first).

use anyhow::{anyhow, Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use std::str::FromStr;

fn convert(set: &Option<Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c)?
            .as_str()
            .map(str::to_string)
            .unwrap_or_default();
        let cap = Capability::from_str(&name).map_err(|_| anyhow!("unknown capability {name}"))?;
        out.insert(cap);
    }
    Ok(out)
}

pub struct CapPlan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapPlan {
    /// No capabilities section means no capabilities, as in runc.
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Self> {
        let Some(c) = c else {
            return Ok(CapPlan {
                bounding: CapsHashSet::new(),
                effective: CapsHashSet::new(),
                permitted: CapsHashSet::new(),
                inheritable: CapsHashSet::new(),
                ambient: CapsHashSet::new(),
            });
        };
        Ok(CapPlan {
            bounding: convert(c.bounding()).context("process.capabilities.bounding")?,
            effective: convert(c.effective()).context("process.capabilities.effective")?,
            permitted: convert(c.permitted()).context("process.capabilities.permitted")?,
            inheritable: convert(c.inheritable()).context("process.capabilities.inheritable")?,
            ambient: convert(c.ambient()).context("process.capabilities.ambient")?,
        })
    }

    /// No capability in any set.
    pub fn is_empty(&self) -> bool {
        [
            &self.bounding,
            &self.effective,
            &self.permitted,
            &self.inheritable,
            &self.ambient,
        ]
        .iter()
        .all(|s| s.is_empty())
    }

    /// Drops from the bounding set everything not asked for. Capabilities
    /// this kernel does not know are skipped.
    pub fn apply_bounding(&self) -> Result<()> {
        for cap in caps::runtime::thread_all_supported() {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| anyhow!("dropping {cap} from the bounding set: {e}"))?;
            }
        }
        Ok(())
    }

    /// Sets effective, inheritable, permitted and ambient, in an order the
    /// kernel accepts (effective must stay within permitted at each step).
    pub fn apply_sets(&self) -> Result<()> {
        let supported = caps::runtime::thread_all_supported();
        let known =
            |s: &CapsHashSet| -> CapsHashSet { s.intersection(&supported).copied().collect() };
        // What this process does not hold it cannot give: say which, not
        // just capset's EPERM (a host whose own root lacks one, say).
        let held = caps::read(None, CapSet::Permitted)
            .map_err(|e| anyhow!("reading the permitted capabilities: {e}"))?;
        let wanted: CapsHashSet = known(&self.effective)
            .union(&known(&self.permitted))
            .copied()
            .collect();
        if let Some(names) = missing(&wanted, &held) {
            anyhow::bail!(
                "process.capabilities: {names} cannot be granted: hpcc does not hold them here (the host's bounding set lacks them)"
            );
        }
        caps::set(None, CapSet::Effective, &known(&self.effective))
            .map_err(|e| anyhow!("setting effective capabilities: {e}"))?;
        caps::set(None, CapSet::Inheritable, &known(&self.inheritable))
            .map_err(|e| anyhow!("setting inheritable capabilities: {e}"))?;
        caps::set(None, CapSet::Permitted, &known(&self.permitted))
            .map_err(|e| anyhow!("setting permitted capabilities: {e}"))?;
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| anyhow!("clearing ambient capabilities: {e}"))?;
        for cap in known(&self.ambient) {
            // The kernel raises an ambient cap only if it is both permitted
            // and inheritable; runc skips the others with a warning, and so
            // do we (CVE-2022-29162: inheritable stays as asked).
            if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
                crate::debug!("ambient {cap} not raised: {e}");
            }
        }
        Ok(())
    }
}

/// The names in `wanted` but not in `held`, sorted, or None.
fn missing(wanted: &CapsHashSet, held: &CapsHashSet) -> Option<String> {
    let mut names: Vec<String> = wanted.difference(held).map(|c| c.to_string()).collect();
    names.sort();
    (!names.is_empty()).then(|| names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_not_held_are_named() {
        let held: CapsHashSet = [Capability::CAP_CHOWN, Capability::CAP_KILL].into();
        let wanted: CapsHashSet = [
            Capability::CAP_KILL,
            Capability::CAP_SYS_RESOURCE,
            Capability::CAP_BPF,
        ]
        .into();
        assert_eq!(
            missing(&wanted, &held).as_deref(),
            Some("CAP_BPF, CAP_SYS_RESOURCE")
        );
        assert_eq!(missing(&held, &held), None);
    }
}
