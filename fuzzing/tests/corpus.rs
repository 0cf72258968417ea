//! Every committed fuzz input, through its target: the minimised corpus
//! (`fuzz/corpus/<target>/`) and the inputs that once failed
//! (`fuzz/regressions/<target>/`). A regression on a known input fails
//! `cargo test`, with the file named.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind);
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, target) in novanet_fuzzing::TARGETS {
        for file in inputs(&root.join(name)) {
            let data = std::fs::read(&file).expect("fuzz input");
            total += 1;
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "fuzz inputs failing: {failures:#?}");
    total
}

#[test]
fn the_committed_corpus_passes_every_target() {
    let n = replay("corpus");
    assert!(
        n >= novanet_fuzzing::TARGETS.len(),
        "only {n} corpus inputs: every target has a corpus"
    );
}

#[test]
fn every_input_that_once_failed_passes_now() {
    replay("regressions");
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, _) in novanet_fuzzing::TARGETS {
        assert!(!inputs(&root.join("corpus").join(name)).is_empty(), "{name}: no corpus");
        assert!(
            root.join("fuzz_targets").join(format!("{name}.rs")).is_file(),
            "{name}: no fuzz binary"
        );
    }
}

#[test]
fn the_session_seeds_bring_routes_in() {
    for opts in [1, 1 | 4, 1 | 2] {
        let script = novanet_fuzzing::session_script(opts);
        assert_eq!(
            novanet_fuzzing::run_sessions(&script),
            6,
            "three peers, two prefixes each"
        );
    }
}
