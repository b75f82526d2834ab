//! `mobilesam`: serve MobileSAM over gRPC, or run it offline.

mod serve;

use clap::{Parser, Subcommand};

/// MobileSAM inference: a gRPC streaming server and offline tools.
#[derive(Parser)]
#[command(name = "mobilesam", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
