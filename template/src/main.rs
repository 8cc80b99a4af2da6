//! Entry point; everything lives in the library so that tests reach it.

fn main() -> std::process::ExitCode {
    service::cli::main()
}
