//! Per-container state under `--root`, and the lifecycle rules that read it.

mod root;
pub mod state;

pub use root::{default_root, validate_id};
pub use state::{ContainerState, StateStore, Status, PAUSED_MARK, START_SOCKET};
