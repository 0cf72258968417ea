//! Generates the RouteControl code with the vendored `protoc`, so no system
//! protoc is needed, and the table of every RPC the services declare
//! (`methods.rs`, the crate's `METHODS`).
use prost::Message;
use std::fmt::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("descriptors.bin");
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(&descriptors)
        .compile_protos(
            &[
                "proto/novaroute/v1/novaroute.proto",
                "proto/novanet/routing/v1/insight.proto",
                "proto/novanet/routing/v1/lifecycle.proto",
                "proto/novanet/datapath/v1/datapath.proto",
            ],
            &["proto"],
        )?;
    let set = prost_types::FileDescriptorSet::decode(std::fs::read(&descriptors)?.as_slice())?;
    let mut table = String::from("&[\n");
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            for m in &service.method {
                writeln!(
                    table,
                    "    Method {{ path: \"/{full}/{}\", name: \"{}\", server_streaming: {} }},",
                    m.name(),
                    m.name(),
                    m.server_streaming()
                )?;
            }
        }
    }
    table.push(']');
    std::fs::write(out.join("methods.rs"), table)?;
    Ok(())
}
