//! Export format names as the reference CLI spells them (`--export-format glb-depth_vis`).

use std::fmt;
use std::str::FromStr;

/// One export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// `mini_npz`: `depth`, `conf`, `extrinsics`, `intrinsics` in `results.npz`.
    MiniNpz,
    /// `npz`: like `mini_npz` plus the processed images.
    Npz,
    /// `glb`: point cloud and camera frustums as binary glTF ([`crate::glb`]).
    Glb,
    /// `ply`: binary point cloud ([`crate::ply`]; not in the reference).
    Ply,
    /// `depth_vis`: image beside colourized depth, plus 16-bit PNGs ([`crate::depth_vis`]).
    DepthVis,
    /// `colmap`: COLMAP binary sparse model ([`crate::colmap`]).
    Colmap,
    /// `gs_ply`: 3D Gaussians as a 3DGS PLY ([`crate::gs_ply`]); needs `infer_gs`.
    GsPly,
}

/// Reference formats this port does not write; named in the error so users know why.
const UNSUPPORTED: [&str; 2] = ["feat_vis", "gs_video"];

impl ExportFormat {
    /// Every format, in the order of [`ExportFormat::name`]'s listing.
    pub const ALL: [ExportFormat; 7] = [
        Self::MiniNpz,
        Self::Npz,
        Self::Glb,
        Self::Ply,
        Self::DepthVis,
        Self::Colmap,
        Self::GsPly,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::MiniNpz => "mini_npz",
            Self::Npz => "npz",
            Self::Glb => "glb",
            Self::Ply => "ply",
            Self::DepthVis => "depth_vis",
            Self::Colmap => "colmap",
            Self::GsPly => "gs_ply",
        }
    }

    /// Parses a dash-separated list such as `mini_npz-glb-ply-depth_vis-colmap`, keeping the
    /// order of first appearance and dropping repeats.
    pub fn parse_list(list: &str) -> Result<Vec<ExportFormat>, ParseFormatError> {
        let mut out = Vec::new();
        for part in list.split('-') {
            let format: ExportFormat = part.parse()?;
            if !out.contains(&format) {
                out.push(format);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An export format name that is not one of [`ExportFormat::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.name))]
pub struct ParseFormatError {
    /// The name as given (trimmed).
    pub name: String,
}

fn describe(name: &str) -> String {
    let valid: Vec<&str> = ExportFormat::ALL.iter().map(|f| f.name()).collect();
    let valid = valid.join(", ");
    if name.is_empty() {
        format!("empty export format name (formats are joined with '-'); valid names: {valid}")
    } else if UNSUPPORTED.contains(&name) {
        format!(
            "export format `{name}` of the reference is not supported by da3; valid names: {valid}"
        )
    } else {
        format!("unknown export format `{name}`; valid names: {valid}")
    }
}

impl FromStr for ExportFormat {
    type Err = ParseFormatError;

    /// Parses one name (case-sensitive, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| ParseFormatError {
                name: name.to_string(),
            })
    }
}

/// A dash-separated list of formats, parsed with [`ExportFormat::parse_list`] (for `clap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFormats(pub Vec<ExportFormat>);

impl FromStr for ExportFormats {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExportFormat::parse_list(s).map(Self)
    }
}

impl ExportFormats {
    /// Whether `format` is in the list.
    pub fn contains(&self, format: ExportFormat) -> bool {
        self.0.contains(&format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExportFormat::*;

    #[test]
    fn parses_the_reference_lists() {
        assert_eq!(
            ExportFormat::parse_list("mini_npz-glb-ply-depth_vis-colmap").unwrap(),
            vec![MiniNpz, Glb, Ply, DepthVis, Colmap]
        );
        assert_eq!(ExportFormat::parse_list("npz").unwrap(), vec![Npz]);
        assert_eq!(
            ExportFormat::parse_list("glb-glb-npz").unwrap(),
            vec![Glb, Npz]
        );
        assert_eq!("depth_vis".parse::<ExportFormat>().unwrap(), DepthVis);
        let list: ExportFormats = "colmap-ply".parse().unwrap();
        assert!(list.contains(Ply) && !list.contains(Glb));
        for f in ExportFormat::ALL {
            assert_eq!(f.to_string().parse::<ExportFormat>().unwrap(), f);
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = ExportFormat::parse_list("glb-obj").unwrap_err();
        assert_eq!(err.name, "obj");
        let msg = err.to_string();
        assert!(msg.contains("`obj`"), "{msg}");
        for f in ExportFormat::ALL {
            assert!(msg.contains(f.name()), "{msg}");
        }
        assert_eq!(ExportFormat::parse_list("glb-gs_ply").unwrap(), vec![Glb, GsPly]);
        assert!(ExportFormat::parse_list("gs_video")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(ExportFormat::parse_list("glb--ply")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(ExportFormat::parse_list("").is_err());
        assert!("GLB".parse::<ExportFormat>().is_err());
    }
}
