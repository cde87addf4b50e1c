//! Helpers for the propensity-model tests: run the `liveseg` command, a
//! generated workload with a model registry, and a model service process.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn liveseg(args: &[&str]) -> Result<Output> {
    Command::new(crate::liveseg_bin())
        .args(args)
        .output()
        .with_context(|| format!("running liveseg {args:?}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> Result<String> {
    let out = liveseg(args)?;
    if !out.status.success() {
        bail!(
            "liveseg {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A generated workload and a registry with an active click_7d model.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn events(&self) -> String {
        self.dir.path().join("events.jsonl").display().to_string()
    }
    pub fn registry(&self) -> String {
        self.dir.path().join("models").display().to_string()
    }

    pub fn new() -> Result<Fixture> {
        let f = Fixture {
            dir: tempfile::tempdir()?,
        };
        ok(&[
            "generate",
            "--accounts",
            "120",
            "--days",
            "150",
            "--seed",
            "11",
            "-O",
            &f.events(),
        ])?;
        Ok(f)
    }

    /// The history plus the active `click_7d` model's scores served at
    /// instant `at`, as a node logs them (`Propensity Scored` records): a
    /// scoring node's log. Returns its path.
    pub fn served_log(&self, at: &str) -> Result<String> {
        let records = self.dir.path().join("served.jsonl");
        ok(&[
            "model",
            "score",
            "--events",
            &self.events(),
            "--registry",
            &self.registry(),
            "--target",
            "click_7d",
            "--at",
            at,
            "--records",
            &records.display().to_string(),
        ])?;
        let log = self.dir.path().join("log.jsonl");
        let mut text = std::fs::read_to_string(self.events())?;
        text.push_str(&std::fs::read_to_string(&records)?);
        std::fs::write(&log, text)?;
        Ok(log.display().to_string())
    }

    /// `liveseg model report click_7d --events LOG --metrics-out F` (plus
    /// `extra`) with the active model: its text, the version it reports
    /// on, and the gauges it wrote.
    pub fn served_report(&self, log: &str, extra: &[&str]) -> Result<(String, String, String)> {
        let prom = self.dir.path().join("report.prom");
        let (reg, out) = (self.registry(), prom.display().to_string());
        let mut args = vec![
            "model",
            "report",
            "click_7d",
            "--registry",
            &reg,
            "--events",
            log,
            "--metrics-out",
            &out,
        ];
        args.extend_from_slice(extra);
        let report = ok(&args)?;
        let version = report
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().last())
            .context("the report names no version")?
            .to_string();
        let gauges = std::fs::read_to_string(&prom)?;
        Ok((report, version, gauges))
    }

    pub fn train(&self, extra: &[&str]) -> Result<String> {
        let (events, reg) = (self.events(), self.registry());
        let mut args = vec!["model", "train", "--events", &events, "--registry", &reg];
        args.extend_from_slice(extra);
        ok(&args)
    }
}

/// The first number after `label` in `text`.
pub fn figure(text: &str, label: &str) -> f64 {
    text.split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN)
}

pub struct ModelProc {
    child: Child,
    pub url: String,
}

impl ModelProc {
    /// Sends `sig` (as `kill` spells it: `-STOP`, `-CONT`) to the process.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.child.id().to_string();
        if !Command::new("kill").args([sig, &pid]).status()?.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }
}

impl Drop for ModelProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn serve_models(registry: &str, dir: &Path) -> Result<ModelProc> {
    serve_models_on(registry, dir, "127.0.0.1:0").await
}

/// A model service listening on `listen` (`host:port`; port 0 picks one),
/// its log and address file in `dir`: start one again where it was.
pub async fn serve_models_on(registry: &str, dir: &Path, listen: &str) -> Result<ModelProc> {
    let addr_file = dir.join("model.addr");
    // The file of a previous process would read as ready at once.
    match std::fs::remove_file(&addr_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let child = Command::new(crate::liveseg_bin())
        .args([
            "model",
            "serve",
            "--listen",
            listen,
            "--registry",
            registry,
            "--addr-file",
        ])
        .arg(&addr_file)
        .arg("--model-dir")
        .arg(repo().join("models/all-MiniLM-L6-v2"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("model.log"))?)
        .spawn()?;
    let mut proc = ModelProc {
        child,
        url: String::new(),
    };
    let addr = crate::poll(Duration::from_secs(30), "the address file", || {
        // One that exited (its port taken, say) would never write it.
        let exited = proc.child.try_wait().ok().flatten();
        let a = std::fs::read_to_string(&addr_file).ok();
        async move {
            match exited {
                Some(status) => Some(Err(status)),
                None => a.filter(|a| !a.is_empty()).map(Ok),
            }
        }
    })
    .await?
    .map_err(|status| {
        let log = std::fs::read_to_string(dir.join("model.log")).unwrap_or_default();
        anyhow::anyhow!("the model service exited ({status}): {log}")
    })?;
    proc.url = format!("http://{addr}");
    Ok(proc)
}

/// The ids in `segment` among `liveseg replay` output lines.
pub fn replayed_members(output: &str, segment: &str) -> std::collections::BTreeSet<String> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["segment"] == segment)
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect()
}

/// The ids of a node's members of `segment`.
pub async fn member_ids(
    node: &crate::Node,
    segment: &str,
) -> Result<std::collections::BTreeSet<String>> {
    Ok(crate::all_members(node, segment)
        .await?
        .into_iter()
        .map(|(_, id, _)| id)
        .collect())
}

/// Runs a `liveseg` command against `node` (its address and API key).
pub fn on_node(node: &crate::Node, args: &[&str]) -> Result<String> {
    let url = node.url();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--server", &url, "--api-key", &node.api_key]);
    ok(&all)
}

/// Two segments on the click score: a threshold and a top share.
pub const SCORE_SEGMENT: &str = r#"
- key: likely_clickers
  name: Likely clickers
  entity: contact
  condition: {score: {target: click_7d, at_least: 0.1}}
- key: top_decile_clickers
  name: Top decile clickers
  entity: contact
  condition: {score: {target: click_7d, top_percent: 10}}
"#;

/// A node scoring through `model` every `every` (refresh 1s), its clock
/// at the end of the history, with SCORE_SEGMENT applied and the history
/// ingested; then the clock moves a second on, so the next full round
/// scores every contact on its whole history (scores made while the
/// history streamed in are stamped at the first instant, one per contact
/// and instant).
pub async fn scoring_node(
    f: &Fixture,
    model: &str,
    every: &str,
    extra: &[&str],
) -> Result<(crate::Node, String)> {
    let defs = f.dir.path().join("defs.yaml");
    std::fs::write(&defs, SCORE_SEGMENT)?;
    let defs = defs.display().to_string();
    let data = f.dir.path().join("node");
    let mut flags = vec![
        "--score-every",
        every,
        "--score-refresh",
        "1s",
        "--scoring-server",
        model,
        "--clock",
        "manual:2026-11-01T00:00:00Z",
    ];
    flags.extend_from_slice(extra);
    let node = crate::Node::start(&data, &flags).await?;
    on_node(&node, &["segments", "apply", "--file", &defs])?;
    on_node(&node, &["ingest", &f.events()])?;
    node.settle().await?;
    node.admin()
        .await?
        .advance_clock(liveseg_proto::pb::AdvanceClockRequest {
            to: "2026-11-01T00:00:01Z".into(),
        })
        .await?;
    Ok((node, defs))
}

/// The `scored <instant>` part of an explanation.
pub fn scored_instant(why: &str) -> Option<&str> {
    let at = why.find("scored ")? + "scored ".len();
    why.get(at..at + 24)
}
