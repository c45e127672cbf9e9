//! The shape of the source tree, checked: no import cycles between the
//! top-level modules nor between the files of one module, and no source
//! file much over 600 lines. A small reader of `crate::`, `super::` and
//! child-module paths stands in for `cargo modules`; it reads the files
//! as text, so it is a check of what the code says, not of what rustc
//! resolves, and it errs towards seeing an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file, as the module path it defines ("" for the crate root).
struct File {
    module: String,
    text: String,
}

fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("mod") | Some("lib") => {
            parts.pop();
        }
        Some("main") if parts.len() == 1 => return None,
        _ => {}
    }
    Some(parts.join("::"))
}

/// The text without comments and without the test module at the end of
/// a file (`#[cfg(test)] mod tests { ... }` comes last by convention).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let test_mod = |next: &&str| {
            let n = next.trim();
            let n = n.strip_prefix("pub ").unwrap_or(n);
            n.starts_with("mod ") && n.ends_with('{')
        };
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(test_mod) {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every `.rs` file below `root`.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("source dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

fn read_tree(src: &Path) -> Vec<File> {
    rust_files(src)
        .into_iter()
        .filter_map(|p| {
            let module = module_of(src, &p)?;
            let text = std::fs::read_to_string(&p).expect("source file");
            Some(File { module, text })
        })
        .collect()
}

/// Modules declared only for tests (`#[cfg(test)] mod x;`), which may use
/// anything.
fn test_only(files: &[File]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in files {
        let mut lines = f.text.lines().peekable();
        while let Some(line) = lines.next() {
            if line.trim() != "#[cfg(test)]" {
                continue;
            }
            if let Some(name) = lines.peek().and_then(|n| {
                let n = n.trim();
                let n = n.strip_prefix("pub ").unwrap_or(n);
                n.strip_prefix("mod ")?.strip_suffix(';')
            }) {
                out.insert(join(&f.module, name));
            }
        }
    }
    out
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}::{name}")
    }
}

fn parent_of(m: &str) -> &str {
    m.rsplit_once("::").map_or("", |(p, _)| p)
}

/// The identifier paths that follow `prefix` in `code` ("crate::a::b").
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(prefix).map(|i| i + from) {
        from = i + prefix.len();
        let head = &code[..i];
        let before = head.chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') || head.ends_with("::") {
            continue; // part of a longer identifier or path
        }
        let mut segs = Vec::new();
        let mut t = &code[from..];
        loop {
            let end = t
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(t.len());
            if end == 0 {
                break;
            }
            segs.push(&t[..end]);
            match t[end..].strip_prefix("::") {
                Some(next) => t = next,
                None => break,
            }
        }
        out.push(segs);
    }
    out
}

/// The deepest known module along `base` + `segs`.
fn resolve(modules: &BTreeSet<String>, base: &str, segs: &[&str]) -> String {
    let mut best = base.to_string();
    let mut cur = base.to_string();
    for s in segs {
        cur = join(&cur, s);
        if modules.contains(&cur) {
            best = cur.clone();
        } else {
            break;
        }
    }
    best
}

/// (module, item) → the module that defines an item the module
/// re-exports with `pub use child::...`, so a path through the re-export
/// leads to the file that has the item.
fn reexports(files: &[File], modules: &BTreeSet<String>) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for f in files {
        for stmt in code_of(&f.text).split(';') {
            let Some(path) = stmt.trim().strip_prefix("pub use ") else {
                continue;
            };
            let (prefix, items) = match path.split_once('{') {
                Some((p, i)) => (p, i.trim_end_matches('}').split(',').collect::<Vec<_>>()),
                None => ("", vec![path]),
            };
            for item in items {
                let full = format!("{prefix}{}", item.trim());
                let full = full
                    .split(" as ")
                    .next()
                    .unwrap_or(&full)
                    .trim()
                    .to_string();
                let segs: Vec<&str> = full.split("::").filter(|s| !s.is_empty()).collect();
                let Some((name, through)) = segs.split_last() else {
                    continue;
                };
                let target = resolve(modules, &f.module, through);
                if target != f.module {
                    out.insert((f.module.clone(), name.to_string()), target);
                }
            }
        }
    }
    out
}

/// module → the modules it refers to.
fn edges(files: &[File], skip: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.iter().map(|f| f.module.clone()).collect();
    let re = reexports(files, &modules);
    // The module a path names: the deepest module file, or the file an
    // item re-exported there comes from.
    let target = |base: &str, segs: &[&str]| {
        let m = resolve(&modules, base, segs);
        let depth = if m.is_empty() {
            0
        } else {
            m.split("::").count()
        } - if base.is_empty() {
            0
        } else {
            base.split("::").count()
        };
        match segs.get(depth) {
            Some(item) => re.get(&(m.clone(), item.to_string())).cloned().unwrap_or(m),
            None => m,
        }
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files.iter().filter(|f| !skip.contains(&f.module)) {
        let code = code_of(&f.text);
        let mut to = BTreeSet::new();
        for segs in paths_after(&code, "crate::") {
            to.insert(target("", &segs));
        }
        for segs in paths_after(&code, "super::") {
            let mut base = parent_of(&f.module);
            let mut segs = &segs[..];
            while segs.first() == Some(&"super") {
                base = parent_of(base);
                segs = &segs[1..];
            }
            to.insert(target(base, segs));
        }
        // Children used by their bare name (`plan::plan`, `pub use ops::Op`).
        for child in modules
            .iter()
            .filter(|m| parent_of(m) == f.module && *m != &f.module)
        {
            let name = child.rsplit("::").next().unwrap_or(child);
            if !paths_after(&code, &format!("{name}::")).is_empty() {
                to.insert(child.clone());
            }
        }
        to.remove(&f.module);
        // The crate root is where everything is composed; what a path
        // reaches there is a macro (crate::debug!) or a re-export.
        to.remove("");
        to.retain(|m| !skip.contains(m));
        out.insert(f.module.clone(), to);
    }
    out
}

/// The cycles of a graph, each as the list of its nodes (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.g.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycles_between_files_or_top_level_modules() {
    let files = read_tree(&src_dir());
    let skip = test_only(&files);
    let g = edges(&files, &skip);
    let file_cycles = cycles(&g);
    assert!(
        file_cycles.is_empty(),
        "files that use each other: {file_cycles:#?}"
    );
    // The same graph with each module folded into its top-level one.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let head = |m: &str| m.split("::").next().unwrap_or(m).to_string();
    for (from, tos) in &g {
        let entry = top.entry(head(from)).or_default();
        for to in tos {
            if head(to) != head(from) && !to.is_empty() {
                entry.insert(head(to));
            }
        }
    }
    let top_cycles = cycles(&top);
    assert!(
        top_cycles.is_empty(),
        "top-level modules that use each other: {top_cycles:#?}"
    );
}

#[test]
fn no_source_file_is_much_over_600_lines() {
    // The runtime and the conformance tests alike.
    let mut long = Vec::new();
    let roots = [
        src_dir(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime-tests"),
    ];
    for p in roots.iter().flat_map(|r| rust_files(r)) {
        let n = std::fs::read_to_string(&p)
            .expect("source file")
            .lines()
            .count();
        if n > 650 {
            long.push((p.display().to_string(), n));
        }
    }
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn the_reader_sees_paths_and_cycles() {
    let code = "use crate::fs::{a, b};\nlet x = super::super::ops::Op; mycrate::x; plan::run()";
    assert_eq!(paths_after(code, "crate::"), [vec!["fs"]]);
    assert_eq!(paths_after(code, "super::"), [vec!["super", "ops", "Op"]]);
    assert_eq!(
        code_of("a // crate::x\n#[cfg(test)]\nmod tests {\n crate::y\n}\n"),
        "a \n"
    );
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&g), [vec!["a", "b", "c"]]);
}
