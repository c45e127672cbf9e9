//! The image-mode root's overlay options: the cached image as the
//! read-only lower layer, under either a tmpfs upper that lives and dies
//! with the mount namespace, or a read-only skeleton (skeleton/).

use std::path::Path;

/// overlayfs's mount data for these three directories.
pub fn options(lower: &Path, upper: &Path, work: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}",
        escape(lower),
        escape(upper),
        escape(work)
    )
}

/// A read-only overlay of `layers`, the first on top: no upper layer, so
/// no work directory and nothing overlayfs must test or create.
pub fn lower_only(layers: &[&Path]) -> String {
    let list: Vec<String> = layers.iter().map(|p| escape(p)).collect();
    format!("lowerdir={}", list.join(":"))
}

/// overlayfs splits its options on ',' and its layer lists on ':'.
fn escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    #[test]
    fn separators_in_paths_are_escaped() {
        let o = super::options("/c/a,b:c".as_ref(), "/s/upper".as_ref(), "/s/work".as_ref());
        assert_eq!(o, "lowerdir=/c/a\\,b\\:c,upperdir=/s/upper,workdir=/s/work");
        let o = super::lower_only(&["/c/sk:1".as_ref(), "/c/a,b".as_ref()]);
        assert_eq!(o, "lowerdir=/c/sk\\:1:/c/a\\,b");
    }
}
