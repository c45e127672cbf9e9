//! Images: archives and layouts in, a cached read-only rootfs and an image
//! config out.

pub mod apply;
pub mod cache;
pub mod config;
pub mod decompress;
pub mod digest;
pub mod manifest;
mod parent_dirs;
mod pipeline;
pub(crate) mod printable;
pub(crate) mod progress;
pub mod source;
pub mod whiteouts;
mod zstd_frames;

use std::path::{Path, PathBuf};

/// `PATH`, `PATH@REF` or `PATH:TAG`, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArg {
    pub path: PathBuf,
    pub reference: Option<String>,
}

impl ImageArg {
    /// Splits off a reference only when the whole argument is not itself
    /// an existing path.
    pub fn parse(arg: &str) -> ImageArg {
        if Path::new(arg).exists() {
            return ImageArg {
                path: arg.into(),
                reference: None,
            };
        }
        for sep in ['@', ':'] {
            if let Some((p, r)) = arg.rsplit_once(sep) {
                if !r.is_empty() && !r.contains('/') && Path::new(p).exists() {
                    return ImageArg {
                        path: p.into(),
                        reference: Some(r.to_string()),
                    };
                }
            }
        }
        ImageArg {
            path: arg.into(),
            reference: None,
        }
    }

    /// True when the path looks like an image: an OCI layout directory, a
    /// file that is a tar archive (the format check comes later), or a
    /// missing path whose name is plainly an image's.
    pub fn looks_like_image(&self) -> bool {
        let p = &self.path;
        if !p.exists() {
            return plainly_an_image_name(&p.to_string_lossy());
        }
        if p.is_dir() {
            return p.join("oci-layout").is_file()
                || (p.join("index.json").is_file() && p.join("blobs").is_dir());
        }
        is_tar(p)
    }
}

/// Image file endings, and the registry transport: a name like these is
/// meant as an image even when no such file exists, so it gets an image
/// error ("no such image"), never runc's missing config.json.
const IMAGE_ENDINGS: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.zst", ".oci"];
pub const REGISTRY_PREFIX: &str = "docker://";

pub fn plainly_an_image_name(arg: &str) -> bool {
    arg.starts_with(REGISTRY_PREFIX) || IMAGE_ENDINGS.iter().any(|e| arg.ends_with(e))
}

/// A ustar or GNU tar header: the magic docker, podman and skopeo write.
pub fn is_tar(p: &Path) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    match f.read_exact(&mut buf) {
        Ok(()) => &buf[257..262] == b"ustar",
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_only_off_existing_paths() {
        let dir = std::env::temp_dir().join(format!("hpcc-imgarg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("img.tar");
        std::fs::write(&f, b"x").unwrap();
        let s = f.to_str().unwrap();
        assert_eq!(ImageArg::parse(s).reference, None);
        let a = ImageArg::parse(&format!("{s}@busybox:latest"));
        assert_eq!(
            (a.path.as_path(), a.reference.as_deref()),
            (f.as_path(), Some("busybox:latest"))
        );
        let a = ImageArg::parse(&format!("{s}:v2"));
        assert_eq!(a.reference.as_deref(), Some("v2"));
        assert_eq!(ImageArg::parse("nosuch.tar@x").reference, None);
        assert!(!ImageArg::parse(s).looks_like_image());
        // Missing, but plainly meant as an image; a runc id is not.
        for name in ["nosuch.tar", "x/y.tar.gz", "img.oci", "docker://busybox:1"] {
            assert!(ImageArg::parse(name).looks_like_image(), "{name}");
        }
        assert!(!ImageArg::parse("container-1").looks_like_image());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
