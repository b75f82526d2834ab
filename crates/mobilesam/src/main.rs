//! `mobilesam`: serve MobileSAM over gRPC, or run it offline.

mod annotate;
mod bench;
mod checkpoint_source;
mod detect;
mod embed;
mod embed_dataset;
mod embedding_file;
mod error_message;
mod generate;
mod image_args;
mod info;
mod load;
mod model_args;
mod npy;
mod output;
mod seeded_checkpoint;
mod segment;
mod serve;

use clap::{Parser, Subcommand};

/// MobileSAM inference: a gRPC streaming server and offline tools.
///
/// Without --checkpoint, the weights come from $MOBILESAM_CHECKPOINT, else the official
/// mobile_sam.pt, downloaded once into $MOBILESAM_CACHE_DIR (default ~/.cache/mobilesam).
#[derive(Parser)]
#[command(name = "mobilesam", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant (`serve`'s many flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(serve::ServeArgs),
    /// Segment prompted objects in an image; prints masks as JSON (COCO RLE).
    Segment(segment::SegmentArgs),
    /// Segment everything: automatic mask generation over a grid of points; prints masks
    /// as JSON (COCO RLE), as the reference SamAutomaticMaskGenerator.
    Generate(generate::GenerateArgs),
    /// Encode an image and save its (1, 256, 64, 64) embedding as a NumPy .npy file, or
    /// encode a folder of images into the shared embedding store (--data DIR --store URL).
    Embed(embed::EmbedArgs),
    /// Show a checkpoint's parameter counts per part and its file size.
    Info(info::InfoArgs),
    /// Time the encoder and the decoder on an image: medians in milliseconds.
    Bench(bench::BenchArgs),
    /// Detect objects with an Ultralytics YOLO checkpoint; prints the boxes as JSON.
    Detect(detect::DetectArgs),
    /// Segment every detected box in a folder of images: YOLO segmentation or COCO labels.
    Annotate(annotate::AnnotateArgs),
    /// Drive a running server with K concurrent streams x M prompts: throughput, latency
    /// percentiles, errors per code, gRPC overhead against the in-process decode.
    Load(load::LoadArgs),
    /// Write seeded random weights in the checkpoint layout (tests, smoke tests, benchmarks).
    SeededCheckpoint(seeded_checkpoint::SeededCheckpointArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Segment(args) => segment::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Info(args) => info::run(args),
        Command::Bench(args) => bench::run(args),
        Command::SeededCheckpoint(args) => seeded_checkpoint::run(args),
        Command::Annotate(args) => annotate::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Load(args) => load::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_message::one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
