//! Generates the RouteControl code with the vendored `protoc`, so no system
//! protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &[
                "proto/novaroute/v1/novaroute.proto",
                "proto/novanet/routing/v1/insight.proto",
                "proto/novanet/datapath/v1/datapath.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
