//! Verifies recordings from the command line, as `gf-daemon market verify FILE` does:
//! `cargo run -p gf-market --example verify -- fixtures/market/paper.jsonl`.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut ok = true;
    for path in std::env::args().skip(1) {
        match gf_market::verify::verify_recording(Path::new(&path)) {
            Ok(report) => {
                println!("{path}\n{report}\n");
                ok &= report.passed();
            }
            Err(err) => {
                eprintln!("error: {err}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
