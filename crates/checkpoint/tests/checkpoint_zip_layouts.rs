//! Every zip layout that `torch.load` reads loads here too: the small state_dict of
//! `torch_save_small.pt` rewritten by Python's `zipfile` under folder names of 1 to 128
//! characters, with plain and with zip64 end records, and saved by `torch.save` under several
//! file names (`tests/fixtures/make_zip_layouts.py`). Their tensors must equal what torch
//! read (`torch_save_small.json`).

mod common;

use std::io::Read;

use mobilesam_checkpoint::Checkpoint;
use serde::Deserialize;

#[derive(Deserialize)]
struct Layouts {
    archives: Vec<Archive>,
}

#[derive(Deserialize)]
struct Archive {
    name: String,
    folder: String,
    zip64: bool,
    offset: usize,
    length: usize,
}

fn layouts() -> (Layouts, Vec<u8>) {
    let dir = common::fixtures();
    let index: Layouts = serde_json::from_str(
        &std::fs::read_to_string(dir.join("zip_layouts.json")).expect("index present"),
    )
    .expect("index parses");
    let mut blob = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(dir.join("zip_layouts.bin.gz")).expect("archives present"),
    )
    .read_to_end(&mut blob)
    .expect("gzip");
    (index, blob)
}

/// A tensor of `torch_save_small.json`: what torch says the file holds.
#[derive(Deserialize)]
struct Expected {
    name: String,
    shape: Vec<usize>,
    values: Vec<f64>,
}

fn expected_tensors() -> Vec<Expected> {
    #[derive(Deserialize)]
    struct File {
        tensors: Vec<Expected>,
    }
    let text = std::fs::read_to_string(common::fixtures().join("torch_save_small.json"))
        .expect("torch_save_small.json present");
    serde_json::from_str::<File>(&text).expect("parses").tensors
}

/// `checkpoint` holds exactly the `expected` tensors, with their values.
fn check_tensors(checkpoint: &Checkpoint, expected: &[Expected]) -> Result<(), String> {
    if checkpoint.names().len() != expected.len() {
        return Err(format!("tensors {:?}", checkpoint.names()));
    }
    for tensor in expected {
        let got = checkpoint
            .get(&tensor.name, &tensor.shape)
            .and_then(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?))
            .map_err(|e| e.to_string())?;
        let want: Vec<f32> = tensor.values.iter().map(|&v| v as f32).collect();
        if got != want {
            return Err(format!("values of {} differ", tensor.name));
        }
    }
    Ok(())
}

#[test]
fn every_folder_name_length_and_end_record_form_loads() {
    let expected = expected_tensors();
    let (index, blob) = layouts();
    let mut failures = Vec::new();
    for archive in &index.archives {
        let bytes = &blob[archive.offset..archive.offset + archive.length];
        let result = Checkpoint::from_bytes(bytes, &archive.name)
            .map_err(|e| e.to_string())
            .and_then(|checkpoint| check_tensors(&checkpoint, &expected));
        if let Err(e) = result {
            failures.push(format!(
                "{} (folder of {} characters, zip64 {}): {e}",
                archive.name,
                archive.folder.len(),
                archive.zip64
            ));
        }
    }
    // The fixture covers what the test claims to cover.
    for zip64 in [false, true] {
        let lengths: Vec<usize> = index
            .archives
            .iter()
            .filter(|a| a.name.starts_with("zipfile-") && a.zip64 == zip64)
            .map(|a| a.folder.len())
            .collect();
        assert_eq!(lengths, (1..=128).collect::<Vec<_>>(), "zip64 {zip64}");
    }
    assert!(index
        .archives
        .iter()
        .any(|a| a.name == "torch.save-my_model_v2_final_ep3.pt"));
    assert!(
        failures.is_empty(),
        "{} of {} archives fail:\n{}",
        failures.len(),
        index.archives.len(),
        failures.join("\n")
    );
}
