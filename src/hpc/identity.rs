//! Who the user is inside: their host uid and gid, with a name that
//! resolves. /etc/passwd and /etc/group are the image's plus one entry each,
//! written into the container's private overlay (the cache is untouched).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub group: String,
    pub home: PathBuf,
    pub gecos: String,
}

/// The caller as the host knows them. musl reads only /etc/passwd, so
/// users from LDAP or SSSD are asked of `getent`, which goes through NSS.
pub fn host_identity(uid: u32, gid: u32) -> Identity {
    let pw = passwd_entry(uid);
    let name = pw
        .as_ref()
        .map(|f| f[0].clone())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("user{uid}"));
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| pw.as_ref().map(|f| PathBuf::from(&f[5])))
        .unwrap_or_else(|| PathBuf::from("/"));
    let group = group_name(gid).unwrap_or_else(|| format!("group{gid}"));
    Identity {
        uid,
        gid,
        name,
        group,
        home,
        gecos: pw.map(|f| f[4].clone()).unwrap_or_default(),
    }
}

fn getent(db: &str, key: u32) -> Option<Vec<String>> {
    let out = Command::new(crate::fs::host_tools::program("getent"))
        .arg(db)
        .arg(key.to_string())
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let f: Vec<String> = line.trim_end().split(':').map(str::to_string).collect();
    (out.status.success() && f.len() >= 3).then_some(f)
}

fn passwd_entry(uid: u32) -> Option<Vec<String>> {
    if let Ok(Some(u)) = nix::unistd::User::from_uid(uid.into()) {
        return Some(vec![
            u.name,
            "x".into(),
            uid.to_string(),
            u.gid.to_string(),
            u.gecos.to_string_lossy().into_owned(),
            u.dir.display().to_string(),
            u.shell.display().to_string(),
        ]);
    }
    getent("passwd", uid).filter(|f| f.len() >= 7)
}

fn group_name(gid: u32) -> Option<String> {
    if let Ok(Some(g)) = nix::unistd::Group::from_gid(gid.into()) {
        return Some(g.name);
    }
    getent("group", gid).map(|f| f[0].clone())
}

/// An image's account database, read without following its symlinks out.
pub fn image_file(rootfs: &Path, path: &str) -> String {
    crate::rootfs::resolve::read_in_root(rootfs, Path::new(path), 1 << 20).unwrap_or_default()
}

fn has_id(text: &str, id: u32) -> bool {
    text.lines()
        .any(|l| l.split(':').nth(2).and_then(|f| f.parse::<u32>().ok()) == Some(id))
}

/// The image's /etc/passwd with the user added (unless the image has the uid).
pub fn passwd_file(rootfs: &Path, who: &Identity) -> Vec<u8> {
    let mut text = image_file(rootfs, "/etc/passwd");
    if !has_id(&text, who.uid) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let shell = ["/bin/bash", "/bin/sh"]
            .into_iter()
            .find(|s| rootfs.join(&s[1..]).exists())
            .unwrap_or("/bin/sh");
        text.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{shell}\n",
            who.name,
            who.uid,
            who.gid,
            who.gecos.replace([':', '\n'], " "),
            who.home.display()
        ));
    }
    text.into_bytes()
}

/// The image's /etc/group with the user's primary group added.
pub fn group_file(rootfs: &Path, who: &Identity) -> Vec<u8> {
    let mut text = image_file(rootfs, "/etc/group");
    if !has_id(&text, who.gid) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{}:x:{}:{}\n", who.group, who.gid, who.name));
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_user_once() {
        let d = std::env::temp_dir().join(format!("hpcc-ident-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::write(d.join("bin/sh"), "").unwrap();
        std::fs::write(d.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh").unwrap();
        std::fs::write(d.join("etc/group"), "root:x:0:\n").unwrap();
        let who = Identity {
            uid: 1234,
            gid: 99,
            name: "alice".into(),
            group: "lab".into(),
            home: "/home/alice".into(),
            gecos: "Alice: A".into(),
        };
        let p = String::from_utf8(passwd_file(&d, &who)).unwrap();
        assert_eq!(
            p,
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1234:99:Alice  A:/home/alice:/bin/sh\n"
        );
        let g = String::from_utf8(group_file(&d, &who)).unwrap();
        assert_eq!(g, "root:x:0:\nlab:x:99:alice\n");
        let root = Identity {
            uid: 0,
            gid: 0,
            ..who
        };
        assert_eq!(
            String::from_utf8(passwd_file(&d, &root)).unwrap(),
            "root:x:0:0:root:/root:/bin/sh"
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
