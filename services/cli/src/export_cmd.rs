//! `liveseg export`: a stopped node's event log as Segment-Spec JSON lines,
//! in acceptance order, for one tenant: what `liveseg model train`, `liveseg
//! replay` and backfills read. The log holds each accepted event once, as
//! validated at ingest (timestamps filled in), so the export replays to the
//! node's own state.
//!
//! The store takes an exclusive lock: export from a stopped node, or from a
//! copy of a running node's data directory.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use liveseg_store::{EmbeddedStore, EventLog, StoreOptions};

/// Log entries read per page.
const PAGE: usize = 10_000;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The tenant to export (default: the tenant in <data-dir>/credentials.json).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Write here instead of stdout.
    #[arg(short = 'O', long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn default_tenant(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("credentials.json");
    let text = std::fs::read(&path)
        .with_context(|| format!("no --tenant given and {} is unreadable", path.display()))?;
    let creds: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    match creds["tenant"].as_str() {
        Some(t) => Ok(t.to_string()),
        None => bail!("{}: no `tenant` field; pass --tenant", path.display()),
    }
}

pub fn run(a: &ExportArgs, data_dir: &std::path::Path) -> Result<()> {
    let tenant = match &a.tenant {
        Some(t) => t.clone(),
        None => default_tenant(data_dir)?,
    };
    let store = EmbeddedStore::open(data_dir, StoreOptions::default()).with_context(|| {
        format!(
            "opening the store in {} (stop the node, or export a copy of its data directory)",
            data_dir.display()
        )
    })?;
    let sink: Box<dyn Write> = match &a.out {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let (mut after, mut exported, mut others) = (0, 0u64, 0u64);
    loop {
        let page = store.read_after(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in page {
            if entry.tenant != tenant {
                others += 1;
                continue;
            }
            out.write_all(&entry.payload)?;
            out.write_all(b"\n")?;
            exported += 1;
        }
    }
    out.flush()?;
    eprintln!("exported {exported} events of tenant {tenant} ({others} of other tenants skipped)");
    Ok(())
}
