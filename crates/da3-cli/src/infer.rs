//! `da3 infer`: depth, confidence and cameras for one multi-view scene.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use da3::config::PRESETS;
use da3::{Da3, Da3Config};

use crate::args::CommonArgs;
use crate::scene::{run_scene, Scene};
use crate::UsageError;

/// One-line description of `da3 infer`.
pub const ABOUT: &str = "Predict depth, confidence and camera poses for one scene of one or more images";

/// The long help text of `da3 infer` (`da3 infer --help`).
pub const LONG_ABOUT: &str = concat!(
    "Predict depth, confidence and camera poses for one scene of one or more images.

All images are views of the same scene and are processed jointly (the reference's `images` \
command for an explicit list of files).

",
    preprocessing_help!(),
    "\n\n",
    outputs_help!()
);

/// Arguments of `da3 infer`.
#[derive(Debug, Clone, clap::Args)]
pub struct InferArgs {
    /// Input images (PNG or JPEG) of any size, all views of one scene; grayscale, alpha,
    /// palette, CMYK and 16-bit images are converted to 8-bit RGB as Pillow does. Files that
    /// cannot be decoded are skipped with a warning when at least one good image remains.
    #[arg(required = true, value_name = "IMAGES")]
    pub images: Vec<PathBuf>,

    /// Flags shared by every inference command.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Chooses the model configuration from `--model` or the `config.json` next to the weights.
/// Returns the configuration and where it came from (for the summary).
pub fn resolve_config(model: Option<&str>, weights: &Path) -> Result<(Da3Config, String)> {
    let config_file = match model {
        Some(name) if PRESETS.contains(&name) => {
            return Ok((Da3Config::preset(name)?, format!("preset {name}")));
        }
        Some(arg) => {
            let path = PathBuf::from(arg);
            if !path.is_file() {
                return Err(UsageError(format!(
                    "--model `{arg}` is neither a preset ({}) nor an existing config.json file",
                    PRESETS.join(", ")
                ))
                .into());
            }
            path
        }
        None => {
            let path = weights.parent().unwrap_or(Path::new("")).join("config.json");
            if !path.is_file() {
                return Err(UsageError(format!(
                    "--model not given and there is no {} next to the weights; pass --model with \
                     a preset ({}) or the path of a config.json",
                    path.display(),
                    PRESETS.join(", ")
                ))
                .into());
            }
            path
        }
    };
    let text = std::fs::read_to_string(&config_file)
        .with_context(|| format!("cannot read model config {}", config_file.display()))?;
    let config = Da3Config::from_json(&text).with_context(|| format!("invalid model config {}", config_file.display()))?;
    Ok((config, config_file.display().to_string()))
}

/// The model to run: its configuration, where that came from (for the summary) and the
/// weights file.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The network configuration.
    pub config: Da3Config,
    /// Where the configuration came from (`preset da3-small`, a config.json path).
    pub config_source: String,
    /// The safetensors file.
    pub weights: PathBuf,
    /// `--precision`, applied when the model is loaded.
    pub precision: da3::Precision,
}

/// Resolves `--model`, `--weights` and `--model-dir` into a [`ModelSpec`], checking that the
/// weights exist or downloading them into the Hugging Face cache (before any slow work).
pub fn resolve_model(common: &CommonArgs) -> Result<ModelSpec> {
    let (config, config_source, weights) = crate::hub_cmd::resolve_model(
        common.source.model.as_deref(),
        common.source.weights.as_deref(),
        common.source.model_dir.as_deref(),
        common.quiet,
    )?;
    Ok(ModelSpec { config, config_source, weights, precision: common.precision })
}

/// Loads the model of `spec` on `device` (memory-mapped weights); errors name the file.
pub fn load_model<B: Backend>(spec: &ModelSpec, device: &B::Device) -> Result<Da3<B>> {
    Da3::<B>::from_file(spec.config.clone(), &spec.weights, device)
        .with_context(|| format!("cannot load model weights {}", spec.weights.display()))?
        .with_precision(spec.precision)
        .with_context(|| format!("--precision {}", spec.precision))
}

/// Runs `da3 infer`: the images given, as one scene.
pub fn run(args: &InferArgs) -> Result<()> {
    let scene = Scene::from_images("infer", args.images.clone(), &args.common)?;
    run_scene(&args.common, scene)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_missing_configs() {
        let (cfg, src) = resolve_config(Some("da3-small"), Path::new("w.safetensors")).unwrap();
        assert_eq!((cfg.backbone.embed_dim, src.as_str()), (384, "preset da3-small"));
        let e = resolve_config(Some("da3-huge"), Path::new("w.safetensors")).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some() && e.to_string().contains("da3-huge"), "{e}");
        let e = resolve_config(None, Path::new("/nonexistent/dir/w.safetensors")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dir/config.json"), "{e}");
    }

    #[test]
    fn config_json_next_to_weights_is_used() {
        let dir = std::env::temp_dir().join(format!("da3-cli-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_name": "da3-base"}"#).unwrap();
        let (cfg, _) = resolve_config(None, &dir.join("model.safetensors")).unwrap();
        assert_eq!(cfg.backbone.embed_dim, 768);
        std::fs::write(dir.join("config.json"), "{not json").unwrap();
        let e = format!("{:#}", resolve_config(None, &dir.join("model.safetensors")).unwrap_err());
        assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
