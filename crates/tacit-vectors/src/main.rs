//! `tacit-vectors generate DIR` and `tacit-vectors verify FILE...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tacit_vectors::{generate, verify};

const USAGE: &str = "usage: tacit-vectors generate DIR | tacit-vectors verify FILE...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((cmd, [dir])) if cmd == "generate" => run_generate(Path::new(dir)),
        Some((cmd, files)) if cmd == "verify" && !files.is_empty() => {
            run_verify(&files.iter().map(PathBuf::from).collect::<Vec<_>>())
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run_generate(dir: &Path) -> ExitCode {
    match write_files(dir) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("generate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let x3dh = to_json(&generate::x3dh_file()?)?;
    let ratchet = to_json(&generate::ratchet_file()?)?;
    let envelope = to_json(&tacit_vectors::envelope::envelope_file()?)?;
    let identity = to_json(&tacit_vectors::identity::identity_file()?)?;
    let pqxdh = to_json(&tacit_vectors::pqxdh::pqxdh_file()?)?;
    let group = to_json(&tacit_vectors::group_gen::group_file()?)?;
    let relay_frames = to_json(&tacit_vectors::relay_frames::relay_frames_file()?)?;
    let mut written = Vec::new();
    for (name, text) in [
        ("x3dh.json", x3dh),
        ("ratchet.json", ratchet),
        ("envelope.json", envelope),
        ("identity.json", identity),
        ("pqxdh.json", pqxdh),
        ("group.json", group),
        ("relay-frames.json", relay_frames),
    ] {
        // Never write a file that does not verify.
        let results = verify::verify_json(&text)?;
        if let Some(bad) = results.iter().find(|r| r.outcome.is_err()) {
            return Err(format!(
                "{name}: generated case {} does not verify: {:?}",
                bad.name, bad.outcome
            ));
        }
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| e.to_string())
}

fn run_verify(files: &[PathBuf]) -> ExitCode {
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        match verify::verify_path(file) {
            Ok(results) => {
                for result in results {
                    match result.outcome {
                        Ok(()) => {
                            passed += 1;
                            println!("ok {}", result.name);
                        }
                        Err(reason) => {
                            failed += 1;
                            println!("FAIL {}: {reason}", result.name);
                        }
                    }
                }
            }
            Err(reason) => {
                failed += 1;
                println!("FAIL {}: {reason}", file.display());
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
