//! Compiles proto/handoff/**/*.proto with protox (no protoc on the machine) and
//! generates the prost messages and tonic client and server from the result.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &["handoff/router/v1/router.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=handoff");
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("handoff_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No default stubs: a new rpc must be implemented to compile (test fakes answer
        // through `fake::AssignOnly`).
        .compile_fds(descriptors)?;
    Ok(())
}
