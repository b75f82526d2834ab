//! `serve --backend` / `MOBILESAM_BACKEND` on the real server: the candle backend serves
//! the masks the library computes with it, and an unknown name is refused before the
//! server starts.

use crate::server_support;

use mobilesam_model::{Backend, DecodeOptions, Sam};
use mobilesam_proto::v1;
use server_support::{png, rgb, seeded, Launch, Server};

fn prompt() -> v1::Prompt {
    v1::Prompt {
        request_id: 1,
        objects: vec![v1::ObjectPrompt {
            points: vec![v1::Point {
                x: 30.0,
                y: 20.0,
                label: 1,
            }],
            ..Default::default()
        }],
        multimask_output: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_candle_backend_serves_the_masks_the_library_computes_with_it() {
    let server = Server::launch(Launch::default().env("MOBILESAM_BACKEND", "candle")).await;
    assert!(
        server.log_text().contains("\"backend\":\"candle\""),
        "the model log names the backend: {}",
        server.log_text()
    );
    let mut client = server.client().await;
    let ready = client
        .set_image(v1::SetImage {
            image: png(64, 48, 0),
            ..Default::default()
        })
        .await
        .expect("SetImage")
        .into_inner();
    let served = client
        .predict(v1::PredictRequest {
            session_id: ready.session_id,
            prompt: Some(prompt()),
        })
        .await
        .expect("Predict")
        .into_inner();

    let objects = [mobilesam_model::ObjectPrompt {
        points: vec![mobilesam_model::Point {
            x: 30.0,
            y: 20.0,
            label: 1,
        }],
        ..Default::default()
    }];
    let options = DecodeOptions {
        multimask: true,
        ..Default::default()
    };
    let device = candle_core::Device::Cpu;
    for backend in Backend::ALL {
        let sam = Sam::with_backend(&seeded(), &device, backend).expect("model");
        let embedding = sam.embed(&rgb(64, 48, 0)).expect("embeds");
        let library = sam.decode(&embedding, &objects, options).expect("decodes");
        let pairs = served.objects[0].masks.iter().zip(&library[0].masks);
        assert_eq!(served.objects[0].masks.len(), 3);
        for (i, (ours, theirs)) in pairs.enumerate() {
            let score = (ours.score - theirs.score).abs();
            let area = (ours.area as f64 - theirs.area as f64).abs() / theirs.area.max(1) as f64;
            eprintln!("{backend} mask {i}: score diff {score:.2e}, area diff {area:.2e}");
            // Exactly the library's candle path; the fused one within parity tolerance.
            let (max_score, max_area) = match backend {
                Backend::Candle => (1e-5, 1e-3),
                Backend::Fused => (1e-3, 1e-2),
            };
            assert!(score <= max_score, "{backend} mask {i}: score diff {score}");
            assert!(area <= max_area, "{backend} mask {i}: area diff {area}");
        }
    }
}

#[test]
fn an_unknown_backend_is_refused() {
    let output = Launch::args(&["--backend", "onnx"])
        .command()
        .output()
        .expect("run mobilesam serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("unknown backend `onnx`: expected `candle` or `fused`"),
        "{stderr}"
    );
}
