//! The `agent` command; everything it does lives in [`agentry::cli`].

fn main() -> std::process::ExitCode {
    agentry::cli::main_with_args(std::env::args_os())
}
