//! Replays every file of `fuzz/corpus/<target>/` (and
//! `fuzz/artifacts/<target>/`, where cargo fuzz leaves crashes) through the
//! same entry functions the cargo-fuzz targets call, on stable: a crash once
//! found stays a regression test. Fails if a target has no corpus, or a
//! corpus directory names no target.

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_corpus_file_runs_through_its_target() {
    let corpus = fuzz_dir().join("corpus");
    let mut replayed = 0;
    for (name, _) in fuzz_targets::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        if let Ok(found) = std::fs::read_dir(fuzz_dir().join("artifacts").join(name)) {
            files.extend(found.map(|e| e.unwrap().path()));
        }
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            assert!(fuzz_targets::run(name, &data));
            replayed += 1;
        }
    }
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            fuzz_targets::TARGETS.iter().any(|(n, _)| *n == name),
            "fuzz/corpus/{name} has no target in fuzz-targets"
        );
    }
    println!("replayed {replayed} corpus files");
}
