//! The `agent` command; everything it does lives in [`agentry::cli`].

// mimalloc: burn's many small tensor allocations run markedly faster with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    agentry::cli::main_with_args(std::env::args_os())
}
