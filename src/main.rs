//! `understudy` binary: parse arguments, dispatch. Everything else lives in the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    understudy::cli::run(std::env::args_os().collect())
}
