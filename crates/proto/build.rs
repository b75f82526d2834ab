//! Compiles `proto/mobilesam/v1/mobilesam.proto` with protox (pure Rust, no system
//! `protoc`) and generates prost messages plus tonic client and server code. The encoded
//! file descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "../../proto";
const PROTO_FILE: &str = "mobilesam/v1/mobilesam.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={PROTO_ROOT}/{PROTO_FILE}");

    let fds = protox::compile([PROTO_FILE], [PROTO_ROOT])?;
    std::fs::write(
        out_dir.join("mobilesam_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
