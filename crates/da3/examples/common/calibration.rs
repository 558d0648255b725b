//! The command line shared by the memory calibration examples (`calibrate_memory`,
//! `calibrate_gpu_memory`): `[CONFIG.json WEIGHTS.safetensors] [HxW ...] [--views 1,2,4]`,
//! one fresh child process per (views, size) case (`--case S HxW`), since memory freed in a
//! process stays with its allocator and a second measurement there would read low.

use std::path::PathBuf;

/// What to measure.
pub struct Calibration {
    /// The network configuration (default: the tiny test model).
    pub config: PathBuf,
    /// Its weights.
    pub weights: PathBuf,
    /// The case this process measures (`--case S HxW`: views, height, width); `None` in the
    /// parent, which runs every case in a child.
    pub case: Option<(usize, usize, usize)>,
    /// The sizes (height, width) to measure.
    pub sizes: Vec<(usize, usize)>,
    /// The view counts measured per size.
    pub view_counts: Vec<usize>,
    /// The model arguments given on the command line (passed on to the children).
    model_args: Vec<String>,
}

fn parse_size(s: &str) -> (usize, usize) {
    let (h, w) = s.split_once('x').expect("sizes are HxW, e.g. 280x518");
    (h.parse().expect("HxW"), w.parse().expect("HxW"))
}

impl Calibration {
    /// Reads the command line; `sizes` and `views` are the defaults.
    pub fn from_args(sizes: &[(usize, usize)], views: &[usize]) -> Self {
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        let case = args.iter().position(|a| a == "--case").map(|i| {
            let c: Vec<String> = args.drain(i..i + 3).collect();
            let (h, w) = parse_size(&c[2]);
            (c[1].parse::<usize>().expect("--case S HxW"), h, w)
        });
        let view_counts = match args.iter().position(|a| a == "--views") {
            Some(i) => args.drain(i..i + 2).nth(1).unwrap().split(',').map(|v| v.parse().expect("--views 1,2,4")).collect(),
            None => views.to_vec(),
        };
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let (config, weights, model_args, rest) = match args.first() {
            Some(a) if a.ends_with(".json") => (a.into(), args[1].clone().into(), args[..2].to_vec(), &args[2..]),
            _ => (fixtures.join("tiny.config.json"), fixtures.join("tiny.weights.safetensors"), Vec::new(), &args[..]),
        };
        let sizes = if rest.is_empty() { sizes.to_vec() } else { rest.iter().map(|s| parse_size(s)).collect() };
        Self { config, weights, case, sizes, view_counts, model_args }
    }

    /// Runs every case in a child process of this executable and prints what each prints
    /// (and its stderr when it fails, or always with `always_stderr`).
    pub fn run_children(&self, always_stderr: bool) {
        for (h, w) in &self.sizes {
            for &s in &self.view_counts {
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .args(&self.model_args)
                    .args(["--case", &s.to_string(), &format!("{h}x{w}")])
                    .output()
                    .unwrap();
                print!("{}", String::from_utf8_lossy(&out.stdout));
                if always_stderr || !out.status.success() {
                    eprint!("{}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
    }
}
