//! Compiles the `.proto` files with the vendored `protoc`, so a build needs only the Rust toolchain:
//! cuttle's own API (client and server) and the subset of etcd's v3 API the lock benchmark drives
//! (client only).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let protos = [
        "proto/cuttle/v1/raft.proto",
        "proto/cuttle/v1/cluster.proto",
        "proto/cuttle/v1/agent.proto",
        "proto/cuttle/v1/lock.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure().compile_with_config(config, &protos, &["proto"])?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let etcd = ["proto/etcd/rpc.proto", "proto/etcd/v3lock.proto"];
    for proto in etcd {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, &etcd, &["proto"])?;
    Ok(())
}
