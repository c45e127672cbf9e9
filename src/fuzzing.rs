//! The entry points the fuzz targets in `fuzz/` drive, gathered in one
//! place so the surface they rely on is explicit. Not an API: hidden from
//! the docs and free to change with the fuzz targets.

pub use crate::fs::remove_tree;
pub use crate::image::apply::Applier;
pub use crate::image::config::ImageConfig;
pub use crate::image::digest::Digest;
pub use crate::image::manifest::resolve;
pub use crate::image::source::Source;
pub use crate::launch::idmap::{choose_writer, helper_args, map_text, Writer};
pub use crate::security::seccomp::compile as compile_seccomp;
pub use crate::signals::parse_signal;
pub use crate::spec::{default_spec, make_rootless, parse_config, validate};
