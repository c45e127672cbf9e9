// See Cargo.toml's note on dlmalloc: musl's allocator costs a start dearly.
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    std::process::exit(hpcc::main_entry())
}
