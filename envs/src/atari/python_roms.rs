// Shared by the build script (`include!`d into envs/build.rs) and the crate
// (`roms.rs`): both look for the ROMs of the installed `ale_py` package.

/// The `roms` directory of the installed ale_py package, if Python (`$PYTHON`, else
/// `python3`) can import it.
fn python_rom_dir() -> Option<std::path::PathBuf> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import ale_py, os; print(os.path.join(os.path.dirname(ale_py.__file__), 'roms'))",
        ])
        .output()
        .ok()?;
    let dir = std::path::PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && dir.is_dir()).then_some(dir)
}
