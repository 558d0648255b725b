//! Progress bars (indicatif) on stderr for the slow steps: decoding and inference. Hidden
//! under `--quiet` and whenever stderr is not a terminal (pipes, CI logs, tests).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn: not `quiet`, and stderr is a terminal.
pub fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A bar of `len` steps labelled `message`, drawn only when `show`.
pub fn bar(show: bool, len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target(show));
    let style = ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar
}

/// A spinner with elapsed time for a step of unknown length (one forward pass), drawn only
/// when `show`.
pub fn spinner(show: bool, message: &str) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, target(show));
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner());
    spinner.set_style(style);
    spinner.set_message(message.to_string());
    if show {
        spinner.enable_steady_tick(Duration::from_millis(120));
    }
    spinner
}

fn target(show: bool) -> ProgressDrawTarget {
    if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
