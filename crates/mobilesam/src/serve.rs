//! `mobilesam serve`: placeholder until the server lands.

/// Flags of `mobilesam serve`.
#[derive(clap::Args)]
pub struct ServeArgs {}

/// Runs the server.
pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("the server is not built yet")
}
