//! Who we are to the kernel: real root, or someone inside a user namespace.

/// Real root: uid 0 in the host's user namespace, able to chown, mknod and
/// write any id map.
pub fn is_real_root() -> bool {
    nix::unistd::geteuid().is_root() && in_initial_userns()
}

/// True when this process is in the host's user namespace (the identity map
/// covers all 2^32-1 ids). An unreadable map counts as a user namespace:
/// the privilege checks built on this must fail closed.
pub fn in_initial_userns() -> bool {
    is_initial_map(
        std::fs::read_to_string("/proc/self/uid_map")
            .ok()
            .as_deref(),
    )
}

/// Whether `/proc/self/uid_map`'s text is the initial namespace's map.
pub fn is_initial_map(uid_map: Option<&str>) -> bool {
    uid_map.is_some_and(|s| s.split_whitespace().eq(["0", "0", "4294967295"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_identity_map_is_the_initial_namespace() {
        assert!(is_initial_map(Some("         0          0 4294967295\n")));
        assert!(!is_initial_map(Some("0 1000 1\n")));
        assert!(!is_initial_map(Some("0 0 4294967295\n1 1 1\n")));
        assert!(!is_initial_map(Some("")));
        // Unreadable: never taken for the host's namespace (fail closed).
        assert!(!is_initial_map(None));
    }
}
