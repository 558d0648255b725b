//! Depth Anything 3 checkpoints: the preset table (Hub repository, licence, size, what each
//! model does) and their download into the standard Hugging Face cache through `hf-hub`.
//!
//! ```no_run
//! use da3_hub::{Hub, ModelSpec};
//! let hub = Hub::from_env()?; // HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN
//! let fetched = hub.fetch(&ModelSpec::parse("da3-small")?, &mut ())?;
//! println!("{}", fetched.files.weights.display());
//! # Ok::<(), da3_hub::HubError>(())
//! ```

mod error;
mod hub;
#[cfg(feature = "mock-server")]
pub mod mock;
mod presets;

pub use error::HubError;
pub use hub::{sha256_file, Fetched, Hub, HubConfig, ModelFiles, Progress, CONFIG_FILE, DEFAULT_ENDPOINT, WEIGHTS_FILE};
pub use presets::{preset, Licence, ModelSpec, Preset, DEFAULT_PRESET, PRESETS};
