//! Reading /etc/ld.so.cache directly, as the dynamic loader does, instead
//! of running `ldconfig -p`: ldconfig lives in /sbin, which is not on an
//! ordinary user's PATH on Debian and Ubuntu.
//!
//! Two layouts exist. The new one (glibc 2.32 and later writes only it):
//! the magic `glibc-ld.so.cache1.1`, a 48-byte header (nlibs, string table
//! length, ...), then 24-byte entries (flags, key, value, osversion,
//! hwcap), with string offsets counted from the start of that header. The
//! old one, `ld.so-1.7.0`, a count and 12-byte entries (flags, key,
//! value), may precede it; then the new header follows the old entries,
//! and the old entries' offsets count from the same place. Either way the
//! key is the soname and the value the library's path.

use anyhow::{bail, Result};

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;
const OLD_HEADER: usize = 16;
const OLD_ENTRY: usize = 12;

/// The ELF libc6 type in an entry's low flag bits.
const FLAG_ELF_LIBC6: i32 = 0x0003;
const FLAG_TYPE_MASK: i32 = 0x00ff;
/// The architecture in an entry's high flag bits.
const FLAG_ARCH_MASK: i32 = 0xff00;
const FLAG_X8664_LIB64: i32 = 0x0300;
const FLAG_AARCH64_LIB64: i32 = 0x0a00;

/// One library the cache lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub soname: String,
    pub path: String,
    pub flags: i32,
}

impl Entry {
    /// A libc6 library of `arch` ("x86_64" or "aarch64"); everything else
    /// (32-bit, x32, libc5) is for another ABI and cannot be loaded by a
    /// 64-bit program.
    pub fn is_for(&self, arch: &str) -> bool {
        let want = match arch {
            "x86_64" => FLAG_X8664_LIB64,
            "aarch64" => FLAG_AARCH64_LIB64,
            _ => return false,
        };
        self.flags & FLAG_TYPE_MASK == FLAG_ELF_LIBC6 && self.flags & FLAG_ARCH_MASK == want
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The NUL-terminated string at `base + off`.
fn string_at(b: &[u8], base: usize, off: u32) -> Option<String> {
    let start = base.checked_add(off as usize)?;
    let rest = b.get(start..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// Every entry of a cache file's bytes.
pub fn parse(b: &[u8]) -> Result<Vec<Entry>> {
    if b.starts_with(NEW_MAGIC) {
        return parse_new(b, 0);
    }
    if !b.starts_with(OLD_MAGIC) {
        bail!("not an ld.so cache (unknown magic)");
    }
    let Some(n) = u32_at(b, OLD_MAGIC.len() + 1) else {
        bail!("truncated ld.so cache header");
    };
    let end = (n as usize)
        .checked_mul(OLD_ENTRY)
        .and_then(|len| len.checked_add(OLD_HEADER))
        .filter(|&e| e <= b.len());
    let Some(end) = end else {
        bail!("ld.so cache claims {n} entries, more than the file holds");
    };
    // A new-format table after the old entries (glibc 2.2 to 2.31 wrote
    // both) is preferred: it carries the architecture flags the same way
    // and is what today's loader reads.
    for at in [end, end.next_multiple_of(8)] {
        if b.get(at..).is_some_and(|rest| rest.starts_with(NEW_MAGIC)) {
            return parse_new(b, at);
        }
    }
    let mut out = Vec::new();
    for i in 0..n as usize {
        let e = OLD_HEADER + i * OLD_ENTRY;
        let (Some(flags), Some(key), Some(value)) =
            (i32_at(b, e), u32_at(b, e + 4), u32_at(b, e + 8))
        else {
            bail!("truncated ld.so cache entry {i}");
        };
        if let (Some(soname), Some(path)) = (string_at(b, end, key), string_at(b, end, value)) {
            out.push(Entry {
                soname,
                path,
                flags,
            });
        }
    }
    Ok(out)
}

fn parse_new(b: &[u8], base: usize) -> Result<Vec<Entry>> {
    let Some(n) = u32_at(b, base + NEW_MAGIC.len()) else {
        bail!("truncated ld.so cache header");
    };
    let first = base + NEW_HEADER;
    let fits = (n as usize)
        .checked_mul(NEW_ENTRY)
        .and_then(|len| len.checked_add(first))
        .is_some_and(|e| e <= b.len());
    if !fits {
        bail!("ld.so cache claims {n} entries, more than the file holds");
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let e = first + i * NEW_ENTRY;
        let (Some(flags), Some(key), Some(value)) =
            (i32_at(b, e), u32_at(b, e + 4), u32_at(b, e + 8))
        else {
            bail!("truncated ld.so cache entry {i}");
        };
        // An entry whose strings are out of the file is skipped, not
        // fatal: the loader would never find it either.
        if let (Some(soname), Some(path)) = (string_at(b, base, key), string_at(b, base, value)) {
            out.push(Entry {
                soname,
                path,
                flags,
            });
        }
    }
    Ok(out)
}

/// The architecture name `Entry::is_for` takes for this build.
pub fn this_arch() -> &'static str {
    std::env::consts::ARCH
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache in the new layout, or (with `old`) in the combined one.
    fn build(entries: &[(&str, &str, i32)], old: bool) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut offs = Vec::new();
        // Offsets count from the new header, which comes after the
        // entries; fill them in once the table's start is known.
        for (k, v, _) in entries {
            offs.push((strings.len(), 0));
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vi = strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            offs.last_mut().expect("just pushed").1 = vi;
        }
        let table = NEW_HEADER + entries.len() * NEW_ENTRY;
        let mut new = Vec::new();
        new.extend_from_slice(NEW_MAGIC);
        new.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        new.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        new.resize(NEW_HEADER, 0);
        for ((_, _, flags), (k, v)) in entries.iter().zip(&offs) {
            new.extend_from_slice(&flags.to_ne_bytes());
            new.extend_from_slice(&((table + k) as u32).to_ne_bytes());
            new.extend_from_slice(&((table + v) as u32).to_ne_bytes());
            new.extend_from_slice(&0u32.to_ne_bytes());
            new.extend_from_slice(&0u64.to_ne_bytes());
        }
        new.extend_from_slice(&strings);
        if !old {
            return new;
        }
        let mut file = Vec::new();
        file.extend_from_slice(OLD_MAGIC);
        file.push(0);
        file.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        for ((_, _, flags), (k, v)) in entries.iter().zip(&offs) {
            file.extend_from_slice(&flags.to_ne_bytes());
            file.extend_from_slice(&((table + k) as u32).to_ne_bytes());
            file.extend_from_slice(&((table + v) as u32).to_ne_bytes());
        }
        file.resize(file.len().next_multiple_of(8), 0);
        file.extend_from_slice(&new);
        file
    }

    const LIBS: [(&str, &str, i32); 3] = [
        (
            "libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            0x0303,
        ),
        (
            "libcuda.so.1",
            "/usr/lib/i386-linux-gnu/libcuda.so.1",
            0x0003,
        ),
        ("libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6", 0x0a03),
    ];

    #[test]
    fn both_layouts_list_every_entry_with_its_flags() {
        for old in [false, true] {
            let e = parse(&build(&LIBS, old)).unwrap();
            assert_eq!(e.len(), 3, "old={old}");
            assert_eq!(e[0].soname, "libcuda.so.1");
            assert_eq!(e[0].path, "/usr/lib/x86_64-linux-gnu/libcuda.so.1");
            assert_eq!(e[2].path, "/lib/aarch64-linux-gnu/libm.so.6");
        }
    }

    #[test]
    fn entries_of_other_abis_are_not_for_this_one() {
        let e = parse(&build(&LIBS, false)).unwrap();
        assert!(e[0].is_for("x86_64") && !e[0].is_for("aarch64"));
        // The 32-bit libcuda is skipped on both.
        assert!(!e[1].is_for("x86_64") && !e[1].is_for("aarch64"));
        assert!(e[2].is_for("aarch64") && !e[2].is_for("x86_64"));
        // An x32 library (0x0800) is not x86_64's either.
        let x32 = Entry {
            soname: "a".into(),
            path: "b".into(),
            flags: 0x0803,
        };
        assert!(!x32.is_for("x86_64"));
        assert!(!e[0].is_for("riscv64"));
    }

    #[test]
    fn the_old_layout_alone_is_read() {
        // Only the old table: build the combined file and cut the new one
        // off, pointing the strings at a table right after the entries.
        let mut file = Vec::new();
        file.extend_from_slice(OLD_MAGIC);
        file.push(0);
        file.extend_from_slice(&1u32.to_ne_bytes());
        file.extend_from_slice(&0x0303i32.to_ne_bytes());
        file.extend_from_slice(&0u32.to_ne_bytes());
        file.extend_from_slice(&8u32.to_ne_bytes());
        file.extend_from_slice(b"libx.so\0/lib/libx.so\0");
        let e = parse(&file).unwrap();
        assert_eq!(
            e,
            [Entry {
                soname: "libx.so".into(),
                path: "/lib/libx.so".into(),
                flags: 0x0303
            }]
        );
    }

    #[test]
    fn damaged_caches_fail_cleanly() {
        assert!(parse(b"").is_err());
        assert!(parse(b"something else entirely").is_err());
        let good = build(&LIBS, false);
        for cut in [10, 30, NEW_HEADER + 5, good.len() - 40] {
            // Truncation either fails or drops the entries it cut.
            if let Ok(e) = parse(&good[..cut]) {
                assert!(e.len() < 3, "cut at {cut}");
            }
        }
        // A count far beyond the file is refused, not allocated.
        let mut huge = good.clone();
        huge[NEW_MAGIC.len()..NEW_MAGIC.len() + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&huge)
            .unwrap_err()
            .to_string()
            .contains("more than the file"));
    }

    /// Caches written by the real ldconfig (`-C`, in its default format
    /// and in the compat one that carries the old table too), listing a
    /// 64-bit and a 32-bit library of one soname, the 32-bit one first.
    #[test]
    fn caches_made_by_ldconfig_are_read_and_32_bit_entries_skipped() {
        let d = std::env::temp_dir().join(format!("hpcc-ldcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("lib32")).unwrap();
        std::fs::create_dir_all(d.join("lib64")).unwrap();
        std::fs::write(d.join("c.c"), "int cuInit(unsigned f) { return (int)f; }\n").unwrap();
        for (dir, flags) in [("lib64", &[][..]), ("lib32", &["-m32", "-nostdlib"][..])] {
            let st = std::process::Command::new("gcc")
                .args(flags)
                .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
                .arg(d.join(dir).join("libcuda.so.550.54.14"))
                .arg(d.join("c.c"))
                .status()
                .expect("gcc (apt-get install gcc)");
            assert!(st.success(), "gcc {flags:?}");
        }
        std::fs::write(
            d.join("ld.so.conf"),
            format!(
                "{}\n{}\n",
                d.join("lib32").display(),
                d.join("lib64").display()
            ),
        )
        .unwrap();
        for format in ["new", "compat"] {
            let cache = d.join(format!("cache-{format}"));
            let st = std::process::Command::new("/sbin/ldconfig")
                .args(["-c", format, "-C"])
                .arg(&cache)
                .arg("-f")
                .arg(d.join("ld.so.conf"))
                .status()
                .expect("/sbin/ldconfig");
            assert!(st.success());
            let bytes = std::fs::read(&cache).unwrap();
            assert_eq!(bytes.starts_with(OLD_MAGIC), format == "compat");
            let entries = parse(&bytes).unwrap();
            let ours: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.path.starts_with(d.to_str().unwrap()))
                .collect();
            assert_eq!(ours.len(), 2, "{format}: {ours:?}");
            let for_us: Vec<&&Entry> = ours.iter().filter(|e| e.is_for("x86_64")).collect();
            assert_eq!(for_us.len(), 1, "{format}: {ours:?}");
            assert_eq!(for_us[0].soname, "libcuda.so.1");
            assert!(for_us[0].path.contains("/lib64/"), "{format}: {ours:?}");
            // The whole cache lists the host's C library for this ABI.
            assert!(entries
                .iter()
                .any(|e| e.soname == "libc.so.6" && e.is_for("x86_64")));
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
