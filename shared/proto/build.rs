//! Compiles `proto/liveseg/v1/*.proto` with a vendored protoc, so a fresh
//! machine needs no system protoc.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe_set_protoc(&protoc);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "ingest",
        "segments",
        "membership",
        "admin",
        "model",
        "content",
        "propensity",
        "insight",
    ]
    .map(|name| root.join(format!("liveseg/v1/{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("liveseg_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // Edition 2024 marks set_var unsafe; the build script has no other threads.
    unsafe { std::env::set_var("PROTOC", path) };
}
