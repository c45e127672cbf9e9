//! `hpcc ps`: the processes of a container, as runc lists them.

use super::kill::container_pids;
use super::Ctx;
use crate::cli::{ListFormat, PsArgs};
use crate::container::Status;
use anyhow::{bail, Result};

pub fn run(ctx: &Ctx, a: &PsArgs) -> Result<i32> {
    let st = ctx.store.load(&a.id)?;
    if ctx.store.status(&st) == Status::Stopped {
        bail!("container {} is not running", a.id);
    }
    let mut pids = container_pids(&st);
    pids.sort_unstable();
    match a.format {
        ListFormat::Json => println!("{}", serde_json::to_string(&pids)?),
        ListFormat::Table => {
            println!("{:>8} {:>8} CMD", "PID", "PPID");
            for pid in pids {
                let ppid = crate::procfs::stat(pid).map(|s| s.ppid).unwrap_or(0);
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .replace('\0', " ")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_default();
                println!("{pid:>8} {ppid:>8} {cmd}");
            }
        }
    }
    Ok(0)
}
