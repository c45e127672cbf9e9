//! What every verb gets: the global flags and the state store they name.

use crate::cli::GlobalOpts;
use crate::container::StateStore;

pub struct Ctx {
    pub global: GlobalOpts,
    pub store: StateStore,
}
