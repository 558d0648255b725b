//! The pieces of the `da3` command line: backend dispatch, image loading and preprocessing,
//! `.npz` and 16-bit PNG writers, atomic file output and the `infer` command.

use std::fmt;

pub mod atomic;
pub mod batch;
pub mod device;
pub mod exports;
pub mod hub_cmd;
pub mod images;
pub mod infer;
pub mod jpeg;
pub mod npz;
pub mod output;
pub mod png16;

/// The `da3` command line.
#[derive(Debug, clap::Parser)]
#[command(name = "da3", version, about = "Depth Anything 3: depth and camera poses from images")]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands of `da3`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Predict depth, confidence and camera poses for one scene of one or more images.
    #[command(about = infer::ABOUT, long_about = infer::LONG_ABOUT)]
    Infer(infer::InferArgs),
    /// Download a model (config.json + model.safetensors) into the Hugging Face cache.
    #[command(long_about = hub_cmd::FETCH_LONG_ABOUT)]
    Fetch(hub_cmd::FetchArgs),
    /// List the model presets: Hub repository, licence, size, capabilities, whether cached.
    Models(hub_cmd::ModelsArgs),
}

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Infer(args) => infer::run(args),
        Command::Fetch(args) => hub_cmd::run_fetch(args),
        Command::Models(args) => hub_cmd::run_models(args),
    }
}

/// An error in how the command was invoked (exit code 2, like clap's own usage errors).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The process exit code for an error: 2 for [`UsageError`]s, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|c| c.is::<UsageError>()) {
        2
    } else {
        1
    }
}
