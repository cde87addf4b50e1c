//! One fault scenario's client side running in the background: the load
//! generator and the prober, both calling whichever nodes the scenario
//! marks as reachable. `finish` stops them and hands over what they saw.

use crate::cluster::Cluster;
use crate::load::{Availability, Ledger, LoadConfig, Targets};
use crate::poll;
use anyhow::Result;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Run {
    pub tenants: Vec<(String, String)>,
    targets: Targets,
    ledger: Arc<Mutex<Ledger>>,
    stop: tokio::sync::watch::Sender<bool>,
    load: JoinHandle<()>,
    probe: JoinHandle<()>,
    availability: Arc<Mutex<Availability>>,
}

impl Run {
    pub fn start(cluster: &Cluster, tenants: Vec<(String, String)>, drop_reply_every: u64) -> Run {
        let targets: Targets = Arc::new(Mutex::new(cluster.live_urls()));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let cfg = LoadConfig {
            tenants: tenants.clone(),
            workers: 4,
            batch: 20,
            drop_reply_every,
        };
        let load = tokio::spawn(crate::load::generate(
            cfg,
            targets.clone(),
            stop_rx.clone(),
            ledger.clone(),
        ));
        let availability = Arc::new(Mutex::new(Availability::default()));
        let probe = tokio::spawn(crate::load::probe(
            tenants.clone(),
            targets.clone(),
            Duration::from_millis(50),
            stop_rx,
            availability.clone(),
        ));
        Run {
            tenants,
            targets,
            ledger,
            stop,
            load,
            probe,
            availability,
        }
    }

    /// Points the clients at the nodes that are reachable now.
    pub fn retarget(&self, cluster: &Cluster) {
        *self.targets.lock().unwrap_or_else(|p| p.into_inner()) = cluster.live_urls();
    }

    pub fn acked(&self) -> usize {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acked_events()
    }

    /// Waits until `more` events beyond the current count are acknowledged.
    pub async fn wait_progress(&self, more: usize, deadline: Duration) -> Result<()> {
        let target = self.acked() + more;
        poll(deadline, "load progress", || {
            let n = self.acked();
            async move { (n >= target).then_some(()) }
        })
        .await
    }

    /// Waits until every tenant answered a query after now, so no outage
    /// is still open when the scenario ends.
    pub async fn wait_queryable(&self, deadline: Duration) -> Result<()> {
        let since = liveseg_cluster::journal::mono_ns();
        poll(deadline, "every tenant queryable", || {
            let ok = self
                .availability
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .all_answered_since(since);
            async move { ok.then_some(()) }
        })
        .await
    }

    /// Waits until every tenant is queryable again, stops the clients
    /// (batches in flight finish) and returns their records.
    pub async fn finish(self) -> Result<(Ledger, Availability)> {
        self.wait_queryable(Duration::from_secs(60)).await?;
        let _ = self.stop.send(true);
        self.load.await?;
        self.probe.await?;
        let availability =
            std::mem::take(&mut *self.availability.lock().unwrap_or_else(|p| p.into_inner()));
        let ledger = std::mem::take(&mut *self.ledger.lock().unwrap_or_else(|p| p.into_inner()));
        Ok((ledger, availability))
    }
}
