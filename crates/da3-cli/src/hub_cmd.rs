//! `da3 fetch` and `da3 models`: DA3 checkpoints from the Hugging Face Hub, and how `da3 infer`
//! finds its model files (`--weights`, `--model-dir` or a download into the HF cache).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use da3::Da3Config;
use da3_hub::{Fetched, Hub, HubError, ModelFiles, ModelSpec, DEFAULT_PRESET, PRESETS};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::infer::resolve_config;
use crate::UsageError;

/// Long help of `da3 fetch`.
pub const FETCH_LONG_ABOUT: &str = concat!(
    "Download a model's config.json and model.safetensors from the Hugging Face Hub.\n\n",
    "MODEL is a preset (see `da3 models`), a preset at its first release (da3-large@1.0: the \
original DA3-LARGE instead of the retrained DA3-LARGE-1.1), or any Hub repository \
owner/name[@revision] holding a DA3 config.json and model.safetensors. Files already in the \
cache are not downloaded again (no network access).\n\n",
    "Files go to the Hugging Face cache shared with Python's huggingface_hub: \
$HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (models--OWNER--NAME/snapshots/...). \
HF_ENDPOINT sets the Hub address (a mirror), HF_TOKEN the token for private repositories, and \
HF_HUB_OFFLINE=1 forbids network access (only cached files are used). An interrupted download \
resumes where it stopped when run again; weights are checked against the Hub's sha256."
);

/// Arguments of `da3 fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// A preset (da3-small, da3-base, da3-large, da3-giant, da3mono-large, da3metric-large,
    /// da3nested-giant-large), PRESET@1.0 for a first release, or a Hub repository
    /// owner/name[@revision].
    #[arg(value_name = "MODEL", default_value = DEFAULT_PRESET)]
    pub model: String,

    /// No progress bar and no summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `da3 models` (none).
#[derive(Debug, Clone, clap::Args)]
pub struct ModelsArgs {}

/// Runs `da3 fetch`: prints where the files are.
pub fn run_fetch(args: &FetchArgs) -> Result<()> {
    let spec = parse_spec(&args.model)?;
    let hub = Hub::from_env()?;
    let fetched = fetch_with_bar(&hub, &spec, args.quiet)?;
    if !args.quiet {
        let how = if fetched.downloaded.is_empty() { "already in the cache" } else { "downloaded" };
        println!("{} ({how})", spec.display_name());
        println!("  config   {}", fetched.files.config.display());
        println!("  weights  {}", fetched.files.weights.display());
        if let Some(p) = spec.preset {
            println!("  licence  {}", p.licence);
        }
    }
    Ok(())
}

/// Runs `da3 models`: the preset table, with which presets are in the cache.
pub fn run_models(_args: &ModelsArgs) -> Result<()> {
    let hub = Hub::from_env()?;
    print!("{}", models_table(&hub));
    Ok(())
}

/// The text `da3 models` prints.
pub fn models_table(hub: &Hub) -> String {
    let mut rows = vec![["PRESET", "REPOSITORY", "LICENCE", "PARAMS", "CACHED", "CAPABILITIES"].map(String::from)];
    for p in &PRESETS {
        let spec = ModelSpec::parse(p.name).expect("presets parse");
        let mut name = p.name.to_string();
        if p.name == DEFAULT_PRESET {
            name.push_str(" (default)");
        }
        if !da3::config::PRESETS.contains(&p.name) {
            name.push_str(" *");
        }
        let cached = if hub.cached(&spec).is_some() { "yes" } else { "no" };
        rows.push([name, p.repo.to_string(), p.licence.to_string(), p.params_human(), cached.into(), p.capabilities.into()]);
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(&row[5]);
        out.push('\n');
    }
    if rows.iter().any(|r| r[0].ends_with(" *")) {
        out.push_str("\n* not runnable by `da3 infer` yet (can be fetched).");
    }
    out.push_str(
        "\nApache-2.0 models allow commercial use; CC-BY-NC-4.0 models do not.\n\
         da3-large, da3-giant and da3nested-giant-large are the retrained 1.1 checkpoints; \
         PRESET@1.0 names the first release (e.g. da3-large@1.0 = depth-anything/DA3-LARGE).\n",
    );
    out.push_str(&format!("Cache: {} (HF_HUB_CACHE / HF_HOME)\n", hub.config().cache_dir.display()));
    out
}

/// Finds the model for `da3 infer`: returns its configuration, a description of where it came
/// from, and the weights file.
///
/// - `weights` given: that file, with the config from `model` (preset or config.json) or the
///   config.json next to it (unchanged behaviour of `--weights`);
/// - `model_dir` given: `DIR/config.json` (or `model`) and `DIR/model.safetensors`;
/// - neither: `model` (default [`DEFAULT_PRESET`]) is a preset or Hub repository, downloaded
///   into the HF cache on first use with a progress bar unless `quiet`.
pub fn resolve_model(
    model: Option<&str>,
    weights: Option<&Path>,
    model_dir: Option<&Path>,
    quiet: bool,
) -> Result<(Da3Config, String, PathBuf)> {
    if let Some(weights) = weights {
        let (config, source) = resolve_config(model, weights)?;
        if !weights.is_file() {
            return Err(UsageError(format!("weights file {} not found", weights.display())).into());
        }
        return Ok((config, source, weights.to_path_buf()));
    }
    if let Some(dir) = model_dir {
        let files = ModelFiles::from_dir(dir).map_err(|e| UsageError(e.to_string()))?;
        let (config, source) = resolve_config(model, &files.weights)?;
        return Ok((config, source, files.weights));
    }
    let name = model.unwrap_or(DEFAULT_PRESET);
    if name.ends_with(".json") || Path::new(name).is_file() {
        return Err(UsageError(format!(
            "--model {name} is a config file; give the weights with --weights FILE, or use \
             --model-dir DIR for a directory holding config.json and model.safetensors"
        ))
        .into());
    }
    let spec = parse_spec(name)?;
    if let Some(p) = spec.preset {
        if !da3::config::PRESETS.contains(&p.name) {
            return Err(UsageError(format!("{} is not supported by da3 infer yet; see `da3 models`", p.name)).into());
        }
    }
    let hub = Hub::from_env()?;
    let fetched = fetch_with_bar(&hub, &spec, quiet)?;
    let config_path = fetched.files.config.display().to_string();
    let (config, _) = resolve_config(Some(&config_path), &fetched.files.weights)?;
    Ok((config, format!("{} from the HF cache", spec.display_name()), fetched.files.weights))
}

/// The configuration `resolve_model` will use, when it is known without reading or
/// downloading anything: no `--weights`/`--model-dir`, and `model` (default
/// [`DEFAULT_PRESET`]) is a preset `da3 infer` runs (at any release: every release of a preset
/// has its architecture). `None` otherwise (local files are read quickly anyway; a raw Hub
/// repository's config is only known once downloaded).
pub fn known_preset_config(model: Option<&str>, weights: Option<&Path>, model_dir: Option<&Path>) -> Option<Da3Config> {
    if weights.is_some() || model_dir.is_some() {
        return None;
    }
    let preset = ModelSpec::parse(model.unwrap_or(DEFAULT_PRESET)).ok()?.preset?;
    if !da3::config::PRESETS.contains(&preset.name) {
        return None;
    }
    Da3Config::preset(preset.name).ok()
}

/// Parses a model name; a name that is neither a preset nor a repository is a usage error.
pub(crate) fn parse_spec(name: &str) -> Result<ModelSpec> {
    ModelSpec::parse(name).map_err(|e| UsageError(e.to_string()).into())
}

/// Fetches with an indicatif bar on stderr (hidden when `quiet` or stderr is no terminal).
fn fetch_with_bar(hub: &Hub, spec: &ModelSpec, quiet: bool) -> Result<Fetched> {
    let bar = ProgressBar::with_draw_target(None, if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    bar.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut progress = Bar(bar);
    let result = hub.fetch(spec, &mut progress);
    progress.0.finish_and_clear();
    result.map_err(hub_error).with_context(|| format!("cannot get model {}", spec.display_name()))
}

/// Hub errors the user fixes by changing the command line are usage errors (exit code 2).
fn hub_error(e: HubError) -> anyhow::Error {
    match e {
        HubError::UnknownModel(_) | HubError::UnknownRelease { .. } | HubError::MissingLocal { .. } => {
            UsageError(e.to_string()).into()
        }
        other => other.into(),
    }
}

/// An indicatif bar as download progress.
struct Bar(ProgressBar);

impl da3_hub::Progress for Bar {
    fn start(&mut self, file: &str, total: u64) {
        self.0.set_message(file.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&mut self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&mut self) {}
}
