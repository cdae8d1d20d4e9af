//! `docs/security.md` stays true: every function it names as refusing an attack, and
//! every test it names as showing it, exists in the file it names.

#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn every_row_names_code_and_a_test_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    let mut rows = 0;
    for line in doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
    {
        let cells: Vec<&str> = line.split(" | ").collect();
        if cells.len() < 3 || cells[0] == "| attack" || cells[0] == "| risk" {
            continue;
        }
        rows += 1;
        let (code, test) = (cells[1], cells[2]);
        for (cell, what) in [(code, "code"), (test, "test")] {
            let refs = references(cell);
            assert!(!refs.is_empty(), "{line}: no {what} named");
            for (file, func) in refs {
                let text = std::fs::read_to_string(root.join(&file))
                    .unwrap_or_else(|_| panic!("{line}: {file} does not exist"));
                assert!(
                    text.contains(&format!("fn {func}(")) || text.contains(&format!("fn {func}<")),
                    "{line}: no fn {func} in {file}"
                );
            }
        }
    }
    assert!(rows >= 30, "only {rows} rows");
}

/// The `file` `function` pairs of a cell.
fn references(cell: &str) -> Vec<(String, String)> {
    let ticks: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
    ticks
        .windows(2)
        .filter(|w| w[0].ends_with(".rs") && !w[1].ends_with(".rs"))
        .map(|w| {
            (
                w[0].to_owned(),
                w[1].rsplit("::").next().unwrap().to_owned(),
            )
        })
        .collect()
}
