//! `da3`: Depth Anything 3 from the command line. See `da3 --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    da3_cli::alloc::keep_freed_memory();
    let cli = da3_cli::Cli::parse();
    match da3_cli::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut previous = err.to_string();
            for cause in err.chain().skip(1).map(|c| c.to_string()) {
                // Some errors repeat their source's text; print each message once.
                if !previous.ends_with(&cause) {
                    eprintln!("  caused by: {cause}");
                }
                previous = cause;
            }
            ExitCode::from(da3_cli::exit_code(&err))
        }
    }
}
