//! A cut image never becomes a session: `SetImage` on the stream answers an INVALID_ARGUMENT
//! error (and the stream goes on), the unary `SetImage` an INVALID_ARGUMENT status, for every
//! format of `tests/fixtures/truncation` cut in half; the stream then accepts a whole file.

use crate::server_support;

use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_response::Response as Resp;
use server_support::{image_request, ready, workspace, Server, Stream};
use tonic::Code;

/// Every fixture image: (file name, bytes).
fn images() -> Vec<(String, Vec<u8>)> {
    let dir = workspace().join("tests/fixtures/truncation");
    let mut images: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e != "json"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("image"))
        })
        .collect();
    images.sort();
    assert!(
        images.len() >= 7,
        "JPEG, PNG, WebP, GIF, TIFF, BMP at least"
    );
    images
}

fn set_image(image: Vec<u8>) -> v1::SetImage {
    v1::SetImage {
        image,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_images_are_refused_on_the_stream_and_unary() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    for (name, bytes) in images() {
        let half = bytes[..bytes.len() / 2].to_vec();
        match stream.set_image(half.clone()).await {
            Resp::Error(e) => {
                assert_eq!(
                    (e.request_id, e.code),
                    (0, Code::InvalidArgument as i32),
                    "{name}: {e:?}"
                );
                assert!(
                    e.message.starts_with("cannot decode image"),
                    "{name}: {e:?}"
                );
                if name.ends_with(".jpg") {
                    assert!(e.message.contains("image data is truncated"), "{e:?}");
                }
            }
            other => panic!("{name} cut in half was accepted: {other:?}"),
        }
        let status = client
            .set_image(set_image(half))
            .await
            .expect_err("unary refuses it");
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
    }
    // The stream goes on, and a whole file is accepted (the model crate's
    // `image_truncation` test decodes every one of them).
    let (name, bytes) = images().swap_remove(0);
    stream.send(image_request(bytes)).await;
    let whole = ready(stream.recv().await);
    assert_eq!((whole.width, whole.height), (64, 48), "{name}");
}
