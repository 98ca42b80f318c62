//! The `agent` command; everything it does lives in [`agentry::cli`].

// mimalloc: burn's many small tensor allocations run markedly faster with it. Counted
// so that `agent bench inference` can report allocations per call.
#[global_allocator]
static GLOBAL: agentry::alloc::Counting<mimalloc::MiMalloc> =
    agentry::alloc::Counting(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    agentry::cli::main_with_args(std::env::args_os())
}
