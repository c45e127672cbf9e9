//! `hpcc list`: every container under the state root.

use super::state::oci_state;
use super::Ctx;
use crate::cli::{ListArgs, ListFormat};
use anyhow::Result;
use serde_json::Value;

pub fn run(ctx: &Ctx, a: &ListArgs) -> Result<i32> {
    let states: Vec<Value> = ctx
        .store
        .ids()?
        .iter()
        .filter_map(|id| ctx.store.load(id).ok())
        .map(|st| oci_state(&ctx.store, &st))
        .collect();
    if a.quiet {
        for s in &states {
            println!("{}", s["id"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    match a.format {
        ListFormat::Json => println!("{}", serde_json::to_string(&states)?),
        ListFormat::Table => print!("{}", table(&states)),
    }
    Ok(0)
}

fn table(states: &[Value]) -> String {
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(states.iter().map(|s| {
            ["id", "pid", "status", "bundle", "created", "owner"]
                .iter()
                .map(|k| text(&s[*k]))
                .collect()
        }))
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let s = serde_json::json!({"id": "a", "pid": 12, "status": "running", "bundle": "/b",
                                   "created": "t", "owner": "root"});
        let t = table(&[s]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID   PID   STATUS"));
        assert!(lines[1].starts_with("a    12    running"));
    }
}
