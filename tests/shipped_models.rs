//! The trained models shipped in `models/` reproduce the accuracies the
//! README's "Shipped trained models" table states, through `ftnas infer` on
//! the whole Fashion-MNIST test split (fixed-point fast engine, default
//! 8-bit datapath). The table is the single source: a row added there is
//! checked here.

mod common;

use common::{repo_file, run, succeeded};

/// `(model file, weights file, accuracy as printed)` of every table row.
fn table_rows() -> Vec<(String, String, String)> {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let start = readme
        .find("#### Shipped trained models")
        .expect("README has a `#### Shipped trained models` section");
    let code = |cell: &str| cell.trim().trim_matches('`').to_string();
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
            assert!(cells.len() >= 4, "table row `{l}`: expected 4+ cells");
            (code(cells[0]), code(cells[1]), code(cells[3]))
        })
        .collect()
}

#[test]
fn shipped_weights_reproduce_the_readme_accuracies() {
    let rows = table_rows();
    assert!(!rows.is_empty(), "the table lists no model");
    for (model, weights, acc) in rows {
        assert!(
            acc.ends_with('%'),
            "accuracy cell `{acc}` is not a percentage"
        );
        let out = succeeded(&run(["infer", "--model", &model, "--weights", &weights]));
        assert!(
            out.contains(&format!("clean accuracy {acc}")),
            "{model}: README says {acc}, infer printed: {out}"
        );
    }
}
