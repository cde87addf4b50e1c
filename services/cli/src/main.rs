//! `liveseg`, the command line of liveseg.
//!
//! `main` parses, dispatches and maps the outcome to an exit code (0 ok,
//! 1 failure, 64 bad usage or configuration). The commands live in modules:
//!
//! - `args`: global flags, the command tree, shared value parsers;
//! - `serve`: a standalone node in this process (`liveseg_node::run`);
//! - `replay` + `event_reader`: the engine in-process over a JSONL history;
//! - `segments`: definitions (apply/list/get/delete over the API; validate,
//!   presets and schema offline);
//! - `ingest`: streaming a JSONL file to a node, with retries and progress;
//! - `query` (members, contact, account), `explain`, `watch`, `admin` (clock):
//!   the live API, each with pure rendering functions;
//! - `generate` (the synthetic workload) and `generate_cmd` (its command);
//! - `demo`: generate, serve, ingest and explain in one go;
//! - `model_cmd`: `model serve` (the model service process) and `embed`;
//! - `content_cmd`: `content add|list` and `match` (content matching);
//! - `client`: the channel and API-key interceptor every networked command
//!   shares; `output`: table / json / jsonl printing; `exit`: exit codes.

mod admin;
mod args;
mod bench;
mod client;
mod cluster_args;
mod config_file;
mod content_cmd;
mod content_file;
mod definitions;
mod demo;
mod discover_cmd;
mod event_log;
mod event_reader;
mod exit;
mod explain;
mod export_cmd;
mod generate;
mod generate_cmd;
mod ingest;
mod insight_cmd;
mod message_ids;
mod model_cmd;
mod output;
mod propensity_cmd;
mod query;
mod replay;
mod score_cmd;
mod segments;
mod serve;
mod served_report;
mod watch;

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::args::{Cli, Command, GlobalArgs};
use crate::client::Api;

fn main() -> ExitCode {
    let cli = match args::parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with success; mistakes are usage errors.
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let (code, print) = exit::code_for(&err);
            if print {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

/// Offline commands run on this thread; the rest get a tokio runtime.
fn run(cli: Cli) -> Result<()> {
    let Cli { global, command } = cli;
    match command {
        Command::Replay(a) => replay::run(&a),
        Command::Generate(a) => generate_cmd::run(&a),
        Command::Export(a) => export_cmd::run(&a, &global.data_dir()),
        Command::Segments(c) if c.is_offline() => segments::run_offline(&c, global.output),
        Command::Model(c)
            if !matches!(
                c,
                model_cmd::ModelCommand::Serve(_) | model_cmd::ModelCommand::Score(_)
            ) =>
        {
            c.run_offline().unwrap_or(Ok(()))
        }
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(run_async(global, command)),
    }
}

async fn run_async(global: GlobalArgs, command: Command) -> Result<()> {
    let format = global.output;
    match command {
        Command::Serve(a) => serve::run(&a, global.data_dir()).await,
        Command::Demo(a) => demo::run(&a, &global).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Model(model_cmd::ModelCommand::Serve(a)) => {
            model_cmd::serve(&a, serve::shutdown_signal()?).await
        }
        Command::Model(model_cmd::ModelCommand::Score(a)) => score_cmd::run(&a, &global).await,
        Command::Model(c) => c.run_offline().unwrap_or(Ok(())),
        Command::Embed(a) => model_cmd::embed(&a).await,
        Command::Replay(a) => replay::run(&a),
        Command::Generate(a) => generate_cmd::run(&a),
        Command::Export(a) => export_cmd::run(&a, &global.data_dir()),
        Command::Segments(c) => segments::run_online(&c, &connect(&global).await?, format).await,
        Command::Ingest(a) => ingest::run(&a, &connect(&global).await?, format).await,
        Command::Members(a) => query::members(&a, &connect(&global).await?, format).await,
        Command::Explain(a) => explain::run(&a, &connect(&global).await?, format).await,
        Command::Contact(a) => query::contact(&a, &connect(&global).await?, format).await,
        Command::Account(a) => query::account(&a, &connect(&global).await?, format).await,
        Command::Watch(a) => watch::run(&a, &connect(&global).await?, format).await,
        Command::Clock(a) => admin::clock(&a, &connect(&global).await?, format).await,
        Command::Content(c) => content_cmd::run(&c, &connect(&global).await?, format).await,
        Command::Match(a) => content_cmd::matches(&a, &connect(&global).await?, format).await,
        Command::Insight(c) => insight_cmd::run(&c, &connect(&global).await?, format).await,
    }
}

async fn connect(global: &GlobalArgs) -> Result<Api> {
    Api::from_args(global).await
}
