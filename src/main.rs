use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = ctxguard::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ctxguard: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ctxguard::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctxguard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
