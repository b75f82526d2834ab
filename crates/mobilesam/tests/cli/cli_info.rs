//! `mobilesam info`: parameter counts per part and file size, as a table and as JSON.

use crate::cli_support;

use cli_support::{arg, checkpoint, run, success};
use mobilesam_checkpoint::Checkpoint;
use serde_json::Value;

#[test]
fn json_counts_match_the_checkpoint() {
    let out = success(&run(&["info", "--checkpoint", arg(checkpoint()), "--json"]));
    let json: Value = serde_json::from_str(&out).expect("JSON");
    let expected = Checkpoint::load(checkpoint())
        .expect("load")
        .parameter_counts();
    let p = &json["parameters"];
    let part = |name: &str| p[name].as_u64().expect("count");
    assert_eq!(part("image_encoder"), expected.image_encoder);
    assert_eq!(part("prompt_encoder"), expected.prompt_encoder);
    assert_eq!(part("mask_decoder"), expected.mask_decoder);
    assert_eq!(part("total"), expected.total);
    assert_eq!(
        part("total"),
        part("image_encoder") + part("prompt_encoder") + part("mask_decoder")
    );
    // The counts are the model's, whatever file they came from.
    assert_eq!(
        cli_support::seeded_checkpoint().parameter_counts(),
        expected
    );
    let file_bytes = std::fs::metadata(checkpoint()).expect("stat").len();
    assert_eq!(json["file_bytes"], file_bytes);
    let mb = json["file_size_mb"].as_f64().expect("MB");
    assert!((mb - file_bytes as f64 / 1048576.0).abs() <= 0.05, "{mb}");
    assert_eq!(json["checkpoint"], arg(checkpoint()));
    assert_eq!(json["family"], "mobile_sam");
}

#[test]
fn table_lists_each_part_and_the_total() {
    let out = success(&run(&["info", "--checkpoint", arg(checkpoint())]));
    let counts = Checkpoint::load(checkpoint())
        .expect("load")
        .parameter_counts();
    let row = |name: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{out}"));
        let digits: String = line[name.len()..]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse().expect("count")
    };
    assert_eq!(row("image_encoder"), counts.image_encoder);
    assert_eq!(row("prompt_encoder"), counts.prompt_encoder);
    assert_eq!(row("mask_decoder"), counts.mask_decoder);
    assert_eq!(row("total"), counts.total);
    assert!(out.contains(" MB "), "{out}");
    assert!(
        out.contains("\nfamily: mobile_sam (MobileSAM (TinyViT))\n"),
        "{out}"
    );
    assert!(out.contains("MobileSAM summary: "), "{out}");
}

/// The reduced SAM ViT fixture (tests/fixtures/sam/).
fn sam_vit_checkpoint() -> std::path::PathBuf {
    cli_support::workspace().join("tests/fixtures/sam/sam_vit_r_seed0.pth")
}

#[test]
fn a_sam_vit_checkpoint_reports_its_family_and_sizes() {
    let path = sam_vit_checkpoint();
    let out = success(&run(&["info", "--checkpoint", arg(&path), "--json"]));
    let json: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["family"], "sam_vit");
    let detail = json["family_detail"].as_str().expect("detail");
    assert!(
        detail.contains("width 32, 4 blocks, 2 heads, global attention in blocks [1, 3]"),
        "{detail}"
    );
    assert_eq!(json["parameters"]["total"], 448_616);
    let table = success(&run(&["info", "--checkpoint", arg(&path)]));
    assert!(
        table.contains("\nfamily: sam_vit (SAM ViT (custom size)"),
        "{table}"
    );
    assert!(
        table.contains("SAM ViT summary: 448,616 parameters"),
        "{table}"
    );
}
