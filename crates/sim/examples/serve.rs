//! Runs the embedded API server until Ctrl-C and writes its kubeconfig (for poking at it with
//! kubectl): `cargo run -p karpenter-sim --example serve -- /tmp/kubeconfig`.

use karpenter_sim::apiserver::{ApiServer, ApiServerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubeconfig".to_string());
    let server = ApiServer::start(ApiServerConfig::default()).await?;
    server.write_kubeconfig(std::path::Path::new(&path))?;
    println!("serving on {} (kubeconfig: {path})", server.url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
