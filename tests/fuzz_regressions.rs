//! The fuzz targets' inputs replayed on stable, through the very property checks the targets run
//! (`fuzz/props/`): every seed in `fuzz/seeds/<target>/` and every input a campaign once failed on,
//! kept in `fuzz/regressions/<target>/` after the fix. `cargo test` runs this on every machine, with
//! or without nightly; fuzzing itself is `fuzz/run-ci.sh` (see `fuzz/README.md`).

use std::path::{Path, PathBuf};

#[path = "../fuzz/props/mod.rs"]
mod props;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn every_fuzz_target_is_replayed() {
    let mut on_disk: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut replayed: Vec<String> = props::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    replayed.sort();
    assert_eq!(on_disk, replayed);
}

#[test]
fn seeds_and_regressions_hold_their_properties() {
    for (name, check) in props::TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name}/ is empty");
        for path in seeds
            .iter()
            .chain(&files(&fuzz_dir().join("regressions").join(name)))
        {
            // Printed before the check so that a failing run names the input.
            eprintln!("{name}: {}", path.display());
            check(&std::fs::read(path).unwrap());
        }
    }
}
