//! One thin file per verb. Each takes parsed arguments and the shared
//! context and returns the process exit code.

mod create;
mod delete;
mod exec;
mod features;
mod images;
mod kill;
mod list;
mod pause;
mod ps;
mod pull;
mod run;
mod run_image;
mod spec;
mod start;
mod state;

mod ctx;

pub use ctx::Ctx;

use crate::cli::{Cli, Command};
use crate::container::{default_root, StateStore};
use anyhow::Result;

pub fn dispatch(cli: Cli) -> Result<i32> {
    // The verbs whose hpcc processes enter a container (CVE-2019-5736):
    // run from a sealed copy of the binary, so the container cannot reach
    // the real one through /proc/N/exe.
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        crate::security::sealed_exe::run_from_sealed_copy()?;
    }
    let root = cli.global.root.clone().unwrap_or_else(default_root);
    let ctx = Ctx {
        global: cli.global,
        store: StateStore::new(root),
    };
    match cli.command {
        Command::Spec(a) => spec::run(&a),
        Command::Create(a) => create::run(&ctx, &a),
        Command::Start(a) => start::run(&ctx, &a.id),
        Command::State(a) => state::run(&ctx, &a.id),
        Command::Kill(a) => kill::run(&ctx, &a),
        Command::Delete(a) => delete::run(&ctx, &a),
        Command::Run(a) => run::run(&ctx, &a),
        Command::List(a) => list::run(&ctx, &a),
        Command::Features => features::run(),
        Command::Exec(a) => exec::run(&ctx, &a),
        Command::Ps(a) => ps::run(&ctx, &a),
        Command::Pause(a) => pause::pause(&ctx, &a.id),
        Command::Resume(a) => pause::resume(&ctx, &a.id),
        Command::Update(a) => pause::update(&ctx, &a.id, &a.resources),
        Command::RunImage(a) => run_image::run(&ctx, &a),
        Command::Images(a) => images::list(&a),
        Command::Rmi(a) => images::rmi(&a),
        Command::Prune(a) => images::prune(&a),
        Command::Pull(a) => pull::run(&a),
    }
}
