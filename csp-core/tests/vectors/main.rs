//! Golden vectors: every file in `../shared/vectors/` and
//! `../shared/vectors-next/` (bytes produced by libcsp itself) is read, and every vector a checker understands is checked
//! in both directions where the vector gives both. A missing directory or an
//! unknown topic fails the run, and so does a checker whose topic no file
//! provides: silence here would hide a broken setup.

mod support;

mod can;
mod crc32;
mod header;
mod hmac;
mod kiss;
mod rdp;
mod services;
mod sfp;
mod xtea;

use support::{Outcome, Vector};

type Checker = fn(&Vector) -> Outcome;

/// Every topic with a checker; each must be provided by some file.
const TOPICS: &[&str] = &[
    "header", "crc32", "hmac", "xtea", "kiss", "sfp", "services", "rdp", "can",
];

fn checker(topic: &str) -> Option<Checker> {
    Some(match topic {
        "header" => header::check,
        "crc32" => crc32::check,
        "hmac" => hmac::check,
        "xtea" => xtea::check,
        "kiss" => kiss::check,
        "sfp" => sfp::check,
        "services" => services::check,
        "rdp" => rdp::check,
        "can" => can::check,
        _ => return None,
    })
}

#[test]
fn golden_vectors_from_libcsp() {
    let dirs = support::vectors_dirs();
    let mut files = Vec::new();
    for dir in &dirs {
        let mut in_dir: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("vectors directory {} unreadable: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        in_dir.sort();
        files.extend(in_dir);
    }
    assert!(!files.is_empty(), "no vector files in {dirs:?}");
    let mut topics_seen = Vec::new();

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for path in &files {
        let (topic, vectors) = support::load(path);
        topics_seen.push(topic.clone());
        let check = checker(&topic)
            .unwrap_or_else(|| panic!("{}: unknown topic {topic:?}", path.display()));
        let (mut checked, mut skipped) = (0usize, Vec::new());
        for v in &vectors {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(v)));
            match r {
                Ok(Outcome::Checked) => checked += 1,
                Ok(Outcome::NotUnderstood(why)) => skipped.push(format!("{} ({why})", v.id())),
                Err(e) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{topic}/{}: {msg}", v.id()));
                }
            }
        }
        summary.push(format!(
            "{topic}: {checked} of {} checked; not understood: {skipped:?}",
            vectors.len()
        ));
        if checked == 0 {
            failures.push(format!(
                "{topic}: no vector understood; a checker that checks nothing hides breakage"
            ));
        }
    }
    for topic in TOPICS {
        if !topics_seen.iter().any(|t| t == topic) {
            failures.push(format!("{topic}: no vector file in {dirs:?}"));
        }
    }
    for line in &summary {
        println!("{line}");
    }
    assert!(
        failures.is_empty(),
        "{} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
