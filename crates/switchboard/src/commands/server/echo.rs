//! `switchboard server echo`: the minimal echo server, for benchmarks and checks.

use clap::Args;
use switchboard_gateway::echo::EchoServer;

use super::TransportArgs;

#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub transport: TransportArgs,
}

pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    super::serve(EchoServer::default(), &args.transport).await
}
