//! The connection every networked command shares: one tonic `Channel` to
//! the node and an interceptor that adds `authorization: Bearer <api key>`
//! to every call. The key comes from `--api-key` / `LIVESEG_API_KEY`, else
//! from the `credentials.json` a node writes into its data dir on first start.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use liveseg_proto::pb::admin_service_client::AdminServiceClient;
use liveseg_proto::pb::content_service_client::ContentServiceClient;
use liveseg_proto::pb::ingest_service_client::IngestServiceClient;
use liveseg_proto::pb::insight_service_client::InsightServiceClient;
use liveseg_proto::pb::membership_service_client::MembershipServiceClient;
use liveseg_proto::pb::segment_service_client::SegmentServiceClient;
use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::args::GlobalArgs;
use crate::exit::usage;

/// Adds the tenant's API key to every request.
#[derive(Clone)]
pub struct BearerAuth {
    header: MetadataValue<Ascii>,
}

impl BearerAuth {
    pub fn new(api_key: &str) -> Result<Self> {
        let header = format!("Bearer {}", api_key.trim())
            .parse()
            .map_err(|_| usage("the API key contains characters not allowed in a header"))?;
        Ok(BearerAuth { header })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, BearerAuth>;

/// A connected, authenticated handle to one node. Cheap to clone: clones
/// share the underlying HTTP/2 connection.
#[derive(Clone)]
pub struct Api {
    channel: Channel,
    auth: BearerAuth,
}

impl Api {
    /// Connects to the node of `--server` with the resolved API key.
    pub async fn from_args(global: &GlobalArgs) -> Result<Api> {
        let key = resolve_api_key(global)?;
        Api::connect(&global.server, &key).await
    }

    pub async fn connect(server: &str, api_key: &str) -> Result<Api> {
        let auth = BearerAuth::new(api_key)?;
        let endpoint = Endpoint::from_shared(server.to_string())
            .map_err(|e| usage(format!("--server {server}: not a valid URL ({e})")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to the liveseg node at {server}"))?;
        Ok(Api { channel, auth })
    }

    pub fn ingest(&self) -> IngestServiceClient<Authed> {
        IngestServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn segments(&self) -> SegmentServiceClient<Authed> {
        SegmentServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn membership(&self) -> MembershipServiceClient<Authed> {
        MembershipServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn admin(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn content(&self) -> ContentServiceClient<Authed> {
        ContentServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn insight(&self) -> InsightServiceClient<Authed> {
        InsightServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
}

#[derive(Deserialize)]
struct CredentialsFile {
    api_key: String,
}

/// `--api-key`, else `<data-dir>/credentials.json`.
pub fn resolve_api_key(global: &GlobalArgs) -> Result<String> {
    if let Some(key) = global.api_key.as_deref().filter(|k| !k.trim().is_empty()) {
        return Ok(key.to_string());
    }
    let dir = global.data_dir();
    read_api_key(&dir).map_err(|e| {
        usage(format!(
            "no API key: pass --api-key or set LIVESEG_API_KEY ({e:#}; \
             a node writes credentials.json into its --data-dir on first start)"
        ))
    })
}

/// The API key in `<dir>/credentials.json`.
pub fn read_api_key(dir: &Path) -> Result<String> {
    let path = dir.join("credentials.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let creds: CredentialsFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a credentials file", path.display()))?;
    Ok(creds.api_key)
}

/// One line for a failed RPC: what was asked, the status code and message.
pub fn rpc_error(what: &str, status: &tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unauthenticated => " (check --api-key / LIVESEG_API_KEY)",
        tonic::Code::Unavailable => " (is the node running? see --server)",
        tonic::Code::Unimplemented => " (the node does not offer this call)",
        _ => "",
    };
    anyhow::anyhow!("{what}: {:?}: {}{hint}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interceptor_adds_a_bearer_header() {
        let mut auth = BearerAuth::new("k-123").expect("key");
        let req = auth.call(tonic::Request::new(())).expect("intercept");
        assert_eq!(
            req.metadata().get("authorization").map(|v| v.to_str().ok()),
            Some(Some("Bearer k-123"))
        );
        assert!(BearerAuth::new("bad\nkey").is_err());
    }

    #[test]
    fn the_key_falls_back_to_the_credentials_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("credentials.json"),
            r#"{"tenant": "t1", "api_key": "secret"}"#,
        )
        .expect("write");
        let mut global = GlobalArgs {
            server: "http://127.0.0.1:1".into(),
            api_key: None,
            data_dir: Some(dir.path().to_path_buf()),
            output: crate::output::OutputFormat::Table,
            data_dir_on_command_line: false,
        };
        assert_eq!(resolve_api_key(&global).expect("key"), "secret");
        global.api_key = Some("flag".into());
        assert_eq!(resolve_api_key(&global).expect("key"), "flag");
        global.api_key = None;
        global.data_dir = Some(dir.path().join("missing"));
        let err = resolve_api_key(&global).expect_err("no key");
        assert!(format!("{err:#}").contains("credentials.json"), "{err:#}");
    }
}
