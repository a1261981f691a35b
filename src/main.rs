use clap::Parser;

/// Every request allocates (headers, JSON, futures); with glibc's allocator that was a
/// fifth of the CPU time of an MCP call under load, mimalloc's thread-local free lists
/// make it a small fraction (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
