//! The `agent` command; everything it does lives in [`agentry::cli`].

// mimalloc: burn's many small tensor allocations run markedly faster with it. Counted
// so that `agent bench inference` can report allocations per call.
#[global_allocator]
static GLOBAL: agentry::alloc::Counting<mimalloc::MiMalloc> =
    agentry::alloc::Counting(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    // A file-size limit (`ulimit -f`) reached while writing a checkpoint is an error
    // like a full disk (EFBIG, reported with the file's name and the last checkpoint
    // kept), not a signal that kills the process mid-write.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN at start-up, before any other
    // thread exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    agentry::cli::main_with_args(std::env::args_os())
}
