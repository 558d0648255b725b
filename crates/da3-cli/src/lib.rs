//! The pieces of the `da3` command line: backend dispatch, input discovery (images, folders,
//! videos, COLMAP scenes, `--poses`), image loading and preprocessing, `.npz` and 16-bit PNG
//! writers, progress bars and the inference subcommands.

use std::fmt;

#[macro_use]
mod help;

pub mod alloc;
pub mod args;
pub mod auto;
pub mod batch;
pub mod colmap_input;
pub mod device;
pub mod exports;
pub mod folder;
pub mod hub_cmd;
pub mod images;
pub mod infer;
pub mod jpeg;
pub mod npz;
pub mod output;
pub mod png16;
pub mod poses;
pub mod progress;
pub mod scene;
pub mod serve;
pub mod stream;
pub mod video;

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
    /// Detect the input kind (image, folder of images, video, COLMAP scene) and run on it.
    #[command(about = auto::ABOUT, long_about = auto::LONG_ABOUT)]
    Auto(auto::AutoArgs),
    /// Predict depth and camera for one image.
    #[command(about = folder::IMAGE_ABOUT, long_about = folder::IMAGE_LONG_ABOUT)]
    Image(folder::ImageArgs),
    /// Predict depth and cameras for a folder of images, as one scene.
    #[command(about = folder::IMAGES_ABOUT, long_about = folder::IMAGES_LONG_ABOUT)]
    Images(folder::ImagesArgs),
    /// Extract frames from a video and predict them as one scene.
    #[command(about = video::ABOUT, long_about = video::LONG_ABOUT)]
    Video(video::VideoArgs),
    /// Pose-conditioned prediction for a COLMAP scene (images/ + sparse/).
    #[command(about = colmap_input::ABOUT, long_about = colmap_input::LONG_ABOUT)]
    Colmap(colmap_input::ColmapArgs),
    /// Predict depth, confidence and camera poses for one scene of one or more images.
    #[command(about = infer::ABOUT, long_about = infer::LONG_ABOUT)]
    Infer(infer::InferArgs),
    /// Download a model (config.json + model.safetensors) into the Hugging Face cache.
    #[command(long_about = hub_cmd::FETCH_LONG_ABOUT)]
    Fetch(hub_cmd::FetchArgs),
    /// List the model presets: Hub repository, licence, size, capabilities, whether cached.
    Models(hub_cmd::ModelsArgs),
    /// Serve predictions over HTTP with the model kept resident (POST /v1/predict).
    Serve(serve::ServeArgs),
}

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Auto(args) => auto::run(args),
        Command::Image(args) => folder::run_image(args),
        Command::Images(args) => folder::run_images(args),
        Command::Video(args) => video::run(args),
        Command::Colmap(args) => colmap_input::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Fetch(args) => hub_cmd::run_fetch(args),
        Command::Models(args) => hub_cmd::run_models(args),
        Command::Serve(args) => serve::run(args),
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
