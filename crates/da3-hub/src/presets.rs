//! The published DA3 checkpoints: preset names, Hub repositories, licences and sizes.

use std::fmt;

use crate::HubError;

/// A checkpoint licence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Licence {
    /// Apache License 2.0: commercial use allowed.
    Apache2,
    /// Creative Commons Attribution-NonCommercial 4.0: no commercial use.
    CcByNc4,
}

impl Licence {
    /// The SPDX-style name shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Licence::Apache2 => "Apache-2.0",
            Licence::CcByNc4 => "CC-BY-NC-4.0",
        }
    }
}

impl fmt::Display for Licence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One published model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name used by `--model` and in the Hub's `config.json` (`{"model_name": ...}`).
    pub name: &'static str,
    /// The Hub repository `da3 fetch NAME` downloads: the newest checkpoint ("-1.1" where the
    /// authors retrained after a training-bug fix; same architecture and config name).
    pub repo: &'static str,
    /// The first release's repository, reached as `NAME@1.0`; equals `repo` where no
    /// retrained checkpoint exists.
    pub repo_v1_0: &'static str,
    /// The checkpoint's licence.
    pub licence: Licence,
    /// Parameters, counted over every module of the instantiated reference model (spec §1.9).
    pub params: u64,
    /// What the model predicts, in one line.
    pub capabilities: &'static str,
}

impl Preset {
    /// The parameter count in a short human form (`34.3M`, `1.36B`).
    pub fn params_human(&self) -> String {
        let p = self.params as f64;
        if p >= 1e9 { format!("{:.2}B", p / 1e9) } else { format!("{:.1}M", p / 1e6) }
    }
}

/// The model used when none is named: `da3-small`.
///
/// It must be Apache-2.0 so that a user who never picks a model is never bound by a
/// non-commercial licence (the reference CLI defaults to the CC BY-NC nested giant). Of the two
/// Apache-2.0 multi-view models, small rather than base: the default backend is the CPU, where
/// small runs about four times faster, and its first-run download is 4x smaller (~140 MB vs
/// ~540 MB in float32). `--model da3-base` is one flag away for better quality.
pub const DEFAULT_PRESET: &str = "da3-small";

/// Every published DA3 checkpoint (spec §1.9), in the order `da3 models` lists them.
pub const PRESETS: [Preset; 7] = [
    Preset {
        name: "da3-small",
        repo: "depth-anything/DA3-SMALL",
        repo_v1_0: "depth-anything/DA3-SMALL",
        licence: Licence::Apache2,
        params: 34_300_000,
        capabilities: "multi-view relative depth, camera poses, pose conditioning",
    },
    Preset {
        name: "da3-base",
        repo: "depth-anything/DA3-BASE",
        repo_v1_0: "depth-anything/DA3-BASE",
        licence: Licence::Apache2,
        params: 135_370_000,
        capabilities: "multi-view relative depth, camera poses, pose conditioning",
    },
    Preset {
        name: "da3-large",
        repo: "depth-anything/DA3-LARGE-1.1",
        repo_v1_0: "depth-anything/DA3-LARGE",
        licence: Licence::CcByNc4,
        params: 410_940_000,
        capabilities: "multi-view relative depth, camera poses, pose conditioning",
    },
    Preset {
        name: "da3-giant",
        repo: "depth-anything/DA3-GIANT-1.1",
        repo_v1_0: "depth-anything/DA3-GIANT",
        licence: Licence::CcByNc4,
        params: 1_355_670_000,
        capabilities: "multi-view relative depth, camera poses, pose conditioning, 3D Gaussians",
    },
    Preset {
        name: "da3mono-large",
        repo: "depth-anything/DA3MONO-LARGE",
        repo_v1_0: "depth-anything/DA3MONO-LARGE",
        licence: Licence::Apache2,
        params: 334_170_000,
        capabilities: "single-view relative depth, sky mask",
    },
    Preset {
        name: "da3metric-large",
        repo: "depth-anything/DA3METRIC-LARGE",
        repo_v1_0: "depth-anything/DA3METRIC-LARGE",
        licence: Licence::Apache2,
        params: 334_170_000,
        capabilities: "single-view metric depth (metres = depth * focal / 300), sky mask",
    },
    Preset {
        name: "da3nested-giant-large",
        repo: "depth-anything/DA3NESTED-GIANT-LARGE-1.1",
        repo_v1_0: "depth-anything/DA3NESTED-GIANT-LARGE",
        licence: Licence::CcByNc4,
        params: 1_689_850_000,
        capabilities: "multi-view metric depth, camera poses, pose conditioning, sky mask, 3D Gaussians",
    },
];

/// The preset of that name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// What to download: a Hub repository at a revision, and the preset it stands for if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// `owner/name` on the Hub.
    pub repo: String,
    /// Branch, tag or commit (`main` for presets).
    pub revision: String,
    /// The preset this spec was made from; `None` for a raw repository id.
    pub preset: Option<&'static Preset>,
}

impl ModelSpec {
    /// Parses what a user names a model by:
    /// - a preset, `da3-large` (the newest checkpoint, `depth-anything/DA3-LARGE-1.1`);
    /// - a preset at a release, `da3-large@1.0` (`depth-anything/DA3-LARGE`) or `@1.1`;
    /// - any Hub repository `owner/name`, optionally at a revision: `owner/name@v2`.
    pub fn parse(text: &str) -> Result<Self, HubError> {
        if let Some((owner_name, revision)) = split_repo(text) {
            return Ok(Self { repo: owner_name.to_string(), revision: revision.to_string(), preset: None });
        }
        let (name, release) = match text.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (text, None),
        };
        let Some(p) = preset(name) else {
            return Err(HubError::UnknownModel(text.to_string()));
        };
        let repo = match release {
            None | Some("1.1") if p.repo != p.repo_v1_0 => p.repo,
            None => p.repo,
            Some("1.0") => p.repo_v1_0,
            Some(other) => {
                let releases = if p.repo != p.repo_v1_0 { "1.0 or 1.1" } else { "1.0" };
                return Err(HubError::UnknownRelease { preset: p.name, release: other.to_string(), releases });
            }
        };
        Ok(Self { repo: repo.to_string(), revision: "main".to_string(), preset: Some(p) })
    }

    /// `owner/name` or `owner/name@revision` when not `main`.
    pub fn display_name(&self) -> String {
        if self.revision == "main" { self.repo.clone() } else { format!("{}@{}", self.repo, self.revision) }
    }
}

/// Splits `owner/name[@revision]`; `None` when `text` is not a repository id.
fn split_repo(text: &str) -> Option<(&str, &str)> {
    let (id, revision) = match text.split_once('@') {
        Some((id, rev)) => (id, rev),
        None => (text, "main"),
    };
    let (owner, name) = id.split_once('/')?;
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (ok(owner) && ok(name) && !revision.is_empty()).then_some((id, revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_apache() {
        assert_eq!(preset(DEFAULT_PRESET).unwrap().licence, Licence::Apache2);
    }

    #[test]
    fn specs_parse() {
        let s = ModelSpec::parse("da3-large").unwrap();
        assert_eq!((s.repo.as_str(), s.revision.as_str()), ("depth-anything/DA3-LARGE-1.1", "main"));
        assert_eq!(ModelSpec::parse("da3-large@1.0").unwrap().repo, "depth-anything/DA3-LARGE");
        assert_eq!(ModelSpec::parse("da3-large@1.1").unwrap().repo, "depth-anything/DA3-LARGE-1.1");
        assert_eq!(ModelSpec::parse("da3-small@1.0").unwrap().repo, "depth-anything/DA3-SMALL");
        assert!(matches!(ModelSpec::parse("da3-small@1.1"), Err(HubError::UnknownRelease { .. })));
        let s = ModelSpec::parse("me/my-da3@abc123").unwrap();
        assert_eq!((s.repo.as_str(), s.revision.as_str(), s.preset), ("me/my-da3", "abc123", None));
        let e = ModelSpec::parse("da3-huge").unwrap_err().to_string();
        assert!(e.contains("da3-huge") && e.contains("da3-small") && e.contains("owner/name"), "{e}");
        assert!(ModelSpec::parse("a/b/c").is_err());
    }

    #[test]
    fn params_are_human() {
        assert_eq!(preset("da3-small").unwrap().params_human(), "34.3M");
        assert_eq!(preset("da3-giant").unwrap().params_human(), "1.36B");
    }
}
