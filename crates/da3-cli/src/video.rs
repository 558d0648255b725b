//! `da3 video FILE`: frames extracted at `--fps` with the `ffmpeg` program, then predicted as
//! one scene, like the reference's `VideoHandler` (which uses OpenCV's decoder).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::args::CommonArgs;
use crate::scene::{preflight, run_scene, Scene};
use crate::UsageError;

/// One-line description of `da3 video`.
pub const ABOUT: &str = "Extract frames from a video at --fps and predict them as one scene";

/// The long help of `da3 video`.
pub const LONG_ABOUT: &str = concat!(
    "Extract frames from a video at --fps and predict them as one scene (the reference's `video` \
command).

Needs the ffmpeg and ffprobe programs on PATH (FFmpeg: `apt-get install ffmpeg`, `brew install \
ffmpeg`, `winget install ffmpeg`). As in the reference, every k-th frame is kept with \
k = max(1, int(video_fps / --fps)), where video_fps is the stream's frame rate as OpenCV reports \
it (ffmpeg's guessed frame rate), and the frames are written as 8-bit RGB PNGs \
EXPORT_DIR/input_images/000000.png, 000001.png, ... (frames of an earlier run there are removed \
first). All frames form one scene: memory grows with their number, so choose --fps accordingly.

",
    preprocessing_help!(),
    "\n\n",
    outputs_help!()
);

/// Arguments of `da3 video`.
#[derive(Debug, Clone, clap::Args)]
pub struct VideoArgs {
    /// The input video (any format ffmpeg reads: mp4, mov, mkv, avi, webm, ...).
    #[arg(value_name = "VIDEO")]
    pub video: PathBuf,

    /// Frames per second to sample; the kept frames are every max(1, int(video_fps / FPS))-th.
    #[arg(long, value_name = "FPS", default_value_t = 1.0, value_parser = parse_fps)]
    pub fps: f64,

    /// Flags shared by every inference command.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parses `--fps`: a positive, finite number.
pub fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!("`{s}` is not a positive number of frames per second")),
    }
}

/// Runs `da3 video`.
pub fn run(args: &VideoArgs) -> Result<()> {
    check_video_file(&args.video)?; // before the model is resolved (and maybe downloaded)
    preflight(&args.common)?;
    let frames = extract_frames(&args.video, &args.common.export_dir, args.fps, args.common.quiet)?;
    let scene = Scene::from_images("video", frames, &args.common)?;
    run_scene(&args.common, scene)
}

/// The subfolder of the export directory the frames are written to (the reference's).
pub const FRAMES_DIR: &str = "input_images";

/// Finds `program` on `PATH` (with `.exe` on Windows).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let exe = format!("{program}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(&exe)).find(|p| p.is_file())
}

/// `ffmpeg` and `ffprobe`, or an error saying how to install them.
fn ffmpeg_tools() -> Result<(PathBuf, PathBuf)> {
    match (find_program("ffmpeg"), find_program("ffprobe")) {
        (Some(ffmpeg), Some(ffprobe)) => Ok((ffmpeg, ffprobe)),
        (ffmpeg, _) => bail!(
            "da3 video needs the {} program{} of FFmpeg, not found on PATH; install FFmpeg \
             (Debian/Ubuntu: `apt-get install ffmpeg`, macOS: `brew install ffmpeg`, Windows: \
             `winget install ffmpeg`), or extract the frames yourself and run `da3 images DIR`",
            if ffmpeg.is_none() { "ffmpeg and ffprobe" } else { "ffprobe" },
            if ffmpeg.is_none() { "s" } else { "" },
        ),
    }
}

/// Parses an ffprobe rate such as `30000/1001` or `25/1`; `None` for `0/0` and garbage.
fn parse_rate(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/').unwrap_or((text, "1"));
    let (num, den): (f64, f64) = (num.trim().parse().ok()?, den.trim().parse().ok()?);
    (num > 0.0 && den > 0.0).then(|| num / den)
}

/// The frame rate OpenCV reports (`av_guess_frame_rate`): the stream's `r_frame_rate`, unless
/// it is implausibly high (> 210) while `avg_frame_rate` is plausible (< 70), or missing.
pub fn guess_frame_rate(r_frame_rate: Option<f64>, avg_frame_rate: Option<f64>) -> Option<f64> {
    match (r_frame_rate, avg_frame_rate) {
        (Some(r), Some(avg)) if avg < 70.0 && r > 210.0 => Some(avg),
        (Some(r), _) => Some(r),
        (None, avg) => avg,
    }
}

/// The reference's frame interval: `max(1, int(video_fps / fps))`.
pub fn frame_interval(video_fps: f64, fps: f64) -> usize {
    ((video_fps / fps) as usize).max(1)
}

/// Reads the first video stream's frame rate with ffprobe.
fn probe_fps(ffprobe: &Path, video: &Path) -> Result<f64> {
    let out = Command::new(ffprobe)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=r_frame_rate,avg_frame_rate", "-of", "json"])
        .arg(video)
        .output()
        .with_context(|| format!("cannot run {}", ffprobe.display()))?;
    if !out.status.success() {
        bail!(
            "cannot read video {}: ffprobe says: {}; check that it is a complete video file",
            video.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("unexpected ffprobe output")?;
    let Some(stream) = json["streams"].get(0) else {
        bail!("{} has no video stream", video.display());
    };
    let rate = |key: &str| stream[key].as_str().and_then(parse_rate);
    guess_frame_rate(rate("r_frame_rate"), rate("avg_frame_rate"))
        .with_context(|| format!("cannot tell the frame rate of video {}", video.display()))
}

/// Whether `name` is a frame file of an earlier run: six digits and `.png`.
fn is_frame_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.len() == 10 && name.ends_with(".png") && name[..6].bytes().all(|b| b.is_ascii_digit())
}

/// Checks that `video` is an existing file (a folder is a usage error); the error names it.
pub fn check_video_file(video: &Path) -> Result<()> {
    if !video.is_file() {
        if video.is_dir() {
            return Err(UsageError(format!("{} is a folder, not a video file", video.display())).into());
        }
        bail!("video file {} not found", video.display());
    }
    Ok(())
}

/// Extracts every k-th frame of `video` (k = [`frame_interval`]) into
/// `export_dir/input_images/%06d.png` and returns the frame files in order.
pub fn extract_frames(video: &Path, export_dir: &Path, fps: f64, quiet: bool) -> Result<Vec<PathBuf>> {
    check_video_file(video)?;
    let (ffmpeg, ffprobe) = ffmpeg_tools()?;
    let video_fps = probe_fps(&ffprobe, video)?;
    let interval = frame_interval(video_fps, fps);
    if !quiet {
        println!("Video FPS: {video_fps:.2}; extracting frames at {:.2} FPS (every {interval} frame(s))", video_fps / interval as f64);
        if fps > video_fps {
            eprintln!("warning: the requested --fps {fps:.2} exceeds the video's {video_fps:.2} FPS; extracting every frame");
        }
    }
    let frames_dir = export_dir.join(FRAMES_DIR);
    std::fs::create_dir_all(&frames_dir).with_context(|| {
        format!("cannot create {}; choose another --export-dir or make it writable", frames_dir.display())
    })?;
    for entry in std::fs::read_dir(&frames_dir).with_context(|| format!("cannot list {}", frames_dir.display()))? {
        let path = entry?.path();
        if path.file_name().is_some_and(is_frame_name) {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove the old frame {}", path.display()))?;
        }
    }
    let run = |fps_mode: &str| {
        Command::new(&ffmpeg)
            .args(["-v", "error", "-nostdin", "-y", "-i"])
            .arg(video)
            .args(["-map", "0:v:0", "-vf", &format!("select=not(mod(n\\,{interval}))"), fps_mode, "passthrough"])
            .args(["-pix_fmt", "rgb24", "-start_number", "0"])
            .arg(frames_dir.join("%06d.png"))
            .output()
            .with_context(|| format!("cannot run {}", ffmpeg.display()))
    };
    let mut out = run("-fps_mode")?;
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("fps_mode") {
        out = run("-vsync")?; // ffmpeg < 5.1
    }
    if !out.status.success() {
        bail!(
            "ffmpeg could not extract frames from {}: {}",
            video.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut frames: Vec<PathBuf> = std::fs::read_dir(&frames_dir)
        .with_context(|| format!("cannot list {}", frames_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(is_frame_name))
        .collect();
    frames.sort();
    if frames.is_empty() {
        bail!("no frames could be extracted from video {}", video.display());
    }
    if !quiet {
        println!("Extracted {} frames to {}", frames.len(), frames_dir.display());
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_intervals_follow_the_reference() {
        assert_eq!(parse_rate("30000/1001"), Some(30000.0 / 1001.0));
        assert_eq!(parse_rate("25/1"), Some(25.0));
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(guess_frame_rate(Some(90000.0), Some(29.97)), Some(29.97));
        assert_eq!(guess_frame_rate(Some(30.0), Some(29.0)), Some(30.0));
        assert_eq!(guess_frame_rate(None, Some(24.0)), Some(24.0));
        assert_eq!(frame_interval(30.0, 1.0), 30);
        assert_eq!(frame_interval(29.97, 1.0), 29);
        assert_eq!(frame_interval(10.0, 4.0), 2);
        assert_eq!(frame_interval(10.0, 60.0), 1);
        assert!(is_frame_name(OsStr::new("000012.png")) && !is_frame_name(OsStr::new("a00012.png")));
        assert!(parse_fps("0").is_err() && parse_fps("nan").is_err() && parse_fps("0.5") == Ok(0.5));
    }
}
