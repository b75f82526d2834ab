//! Bad input gives exit code 1 and a one-line `error: ...` on stderr, never a panic:
//! unreadable, corrupt or unknown images, malformed prompts, missing or invalid
//! checkpoints, and an unreachable download server. None of these runs the encoder.

use crate::cli_support;

use std::net::TcpListener;

use cli_support::{arg, checkpoint, failure, failure_after_notes, image, run, run_env, temp_dir};

/// `segment` on the test image with `prompt` flags.
fn segment(prompt: &[&str]) -> std::process::Output {
    let mut args = vec![
        "segment",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(image()),
    ];
    args.extend_from_slice(prompt);
    run(&args)
}

#[test]
fn bad_prompts_are_refused() {
    let cases: [(&[&str], &str); 16] = [
        (&["--points", "[1, 2]", "--labels", "[2]"], "label 2"),
        (&["--points", "[1, 2]", "--labels", "[-1]"], "label -1"),
        (
            &["--points", "[[1, 2], [3, 4]]", "--labels", "[1, 2]"],
            "label 2",
        ),
        (
            &["--points", "[\"NaN\", 2]"],
            "expected a number, found string \"NaN\"",
        ),
        (&["--points", "[NaN, 2]"], "--points is not valid JSON"),
        (&["--points", "[1, Infinity]"], "--points is not valid JSON"),
        (&["--points", "[1e39, 2]"], "non-finite"),
        (&["--bboxes", "[10, 0, 5, 8]"], "x2 > x1"),
        (&["--bboxes", "[0, 10, 5, 10]"], "y2 > y1"),
        (
            &["--points", "[[1, 2], [3, 4]]", "--labels", "[[1], [0]]"],
            "flat list of 2 labels",
        ),
        (
            &["--points", "[[[1, 2], [3, 4]]]", "--labels", "[1, 0]"],
            "--labels has 2 entries",
        ),
        (
            &["--points", "[[[1, 2], [3, 4]]]", "--labels", "[1]"],
            "--labels[0]: expected a list",
        ),
        (
            &["--points", "[[1, 2], [3, 4]]", "--bboxes", "[0, 0, 5, 5]"],
            "counts must match",
        ),
        (&["--labels", "[1]"], "--labels needs --points"),
        (&[], "no prompt"),
        (&["--points", "[1, 2, 3]"], "expected [x, y]"),
    ];
    for (prompt, expected) in cases {
        failure(&segment(prompt), expected);
    }
}

#[test]
fn bad_images_are_refused() {
    let dir = temp_dir();
    let missing = dir.path().join("missing.png");
    let corrupt = dir.path().join("corrupt.png");
    let mut bytes = std::fs::read(image()).expect("read image");
    bytes.truncate(60);
    bytes.extend_from_slice(&[0xAB; 40]);
    std::fs::write(&corrupt, &bytes).expect("write");
    let unknown = dir.path().join("notes.txt");
    std::fs::write(&unknown, "just some text, not an image").expect("write");
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").expect("write");
    let cases = [
        (&missing, "cannot read"),
        (&corrupt, "cannot decode image"),
        (&unknown, "unrecognized image format"),
        (&empty, "cannot decode image"),
    ];
    for (path, expected) in cases {
        for command in ["segment", "embed"] {
            let out_file = dir.path().join("out.npy");
            let mut args = vec![
                command,
                "--checkpoint",
                arg(checkpoint()),
                "--image",
                arg(path),
            ];
            match command {
                "segment" => args.extend(["--points", "[1, 2]"]),
                _ => args.extend(["--output", arg(&out_file)]),
            }
            failure(&run(&args), expected);
        }
    }
}

#[test]
fn too_large_images_are_refused_before_decoding() {
    let out = segment(&["--points", "[1, 2]", "--max-image-pixels", "100"]);
    failure(&out, "over the limit of 100 pixels");
}

#[test]
fn missing_or_invalid_checkpoints_are_refused() {
    let dir = temp_dir();
    let missing = dir.path().join("nope.pt");
    let out = run(&["info", "--checkpoint", arg(&missing)]);
    let message = failure(&out, "does not exist");
    assert!(message.contains(arg(&missing)), "{message}");
    let out = run(&[
        "segment",
        "--checkpoint",
        arg(&missing),
        "--image",
        arg(image()),
        "--points",
        "[1, 2]",
    ]);
    failure(&out, "does not exist");

    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, "this is not a checkpoint at all").expect("write");
    failure(
        &run(&["info", "--checkpoint", arg(&garbage)]),
        "invalid checkpoint",
    );
    let out = run(&[
        "segment",
        "--checkpoint",
        arg(&garbage),
        "--image",
        arg(image()),
        "--points",
        "[1, 2]",
    ]);
    failure(&out, "invalid checkpoint");

    let out = run_env(&["info"], &[("MOBILESAM_CHECKPOINT", arg(&missing))]);
    failure(&out, "MOBILESAM_CHECKPOINT");
}

#[test]
fn offline_download_error_says_where_to_put_the_file() {
    // A port that was just free: connecting to it is refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/mobile_sam.pt");
    let cache = temp_dir();
    let env = [
        ("MOBILESAM_CACHE_DIR", arg(cache.path())),
        ("MOBILESAM_CHECKPOINT_URL", url.as_str()),
    ];
    let expected_path = cache.path().join("mobile_sam.pt");
    for args in [
        &["info"][..],
        &["segment", "--image", arg(image()), "--points", "[1, 2]"][..],
    ] {
        let message = failure_after_notes(&run_env(args, &env), "could not be downloaded", 1);
        assert!(message.contains(arg(&expected_path)), "{message}");
        assert!(message.contains("--checkpoint"), "{message}");
        assert!(message.contains(&url), "{message}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(cache.path()).expect("list").collect();
    assert!(
        leftovers.is_empty(),
        "no partial download is left: {leftovers:?}"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_the_feature_is_refused() {
    let out = segment(&["--points", "[1, 2]", "--device", "cuda:0"]);
    failure(&out, "--features cuda");
}
