//! The gateway's connected clients, for notifications that fan out to all of them.
//!
//! Session-era clients receive `notifications/{tools,prompts,resources}/list_changed` on their
//! session when any upstream's list changes, and `notifications/resources/updated` for the
//! resources they subscribed to; a client whose session has closed is dropped on the next send.

use std::sync::{Arc, Mutex};

use rmcp::{Peer, RoleServer};

#[derive(Default)]
pub struct Hub {
    clients: Mutex<Vec<Peer<RoleServer>>>,
    subscriptions: Mutex<Vec<Subscription>>,
    /// Where an upstream's `list_changed` is told to the other replicas (`[cluster]`).
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

/// One session-era client's `resources/subscribe`: (upstream, upstream URI, exposed URI, client).
type Subscription = (String, String, String, Peer<RoleServer>);

impl Hub {
    /// Tells other replicas of every upstream `list_changed` this one hears from now on.
    pub fn attach_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// An upstream's own `list_changed` notification reached this replica: tell the others.
    pub fn upstream_list_changed(&self, upstream: &str, list: crate::cluster::ListKind) {
        if let Some(cluster) = self.cluster.get() {
            let cluster = cluster.clone();
            let event = crate::cluster::ClusterEvent::ListChanged {
                upstream: upstream.to_owned(),
                list,
            };
            tokio::spawn(async move { cluster.publish(event).await });
        }
    }

    pub fn register(&self, peer: Peer<RoleServer>) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.retain(|p| !p.is_transport_closed());
            clients.push(peer);
        }
    }

    /// Number of connected session-era clients.
    pub fn client_count(&self) -> usize {
        self.clients
            .lock()
            .map(|mut c| {
                c.retain(|p| !p.is_transport_closed());
                c.len()
            })
            .unwrap_or(0)
    }

    /// Records a client's subscription to `exposed` (the upstream's `uri`).
    pub fn subscribe(&self, upstream: &str, uri: &str, exposed: &str, peer: Peer<RoleServer>) {
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.retain(|s| !s.3.is_transport_closed());
            subs.push((upstream.into(), uri.into(), exposed.into(), peer));
        }
    }

    /// Drops a client's subscription to `exposed`; returns whether any client still has one.
    pub fn unsubscribe(&self, exposed: &str, peer: &Peer<RoleServer>) -> bool {
        let Ok(mut subs) = self.subscriptions.lock() else {
            return false;
        };
        subs.retain(|s| {
            let ended = s.3.is_transport_closed();
            let this_one = s.2 == exposed && same_session(&s.3, peer);
            !ended && !this_one
        });
        subs.iter().any(|s| s.2 == exposed)
    }

    /// Relays an upstream's `notifications/resources/updated` to the clients subscribed to it.
    pub fn resource_updated(&self, upstream: &str, uri: &str) {
        let targets: Vec<(String, Peer<RoleServer>)> = match self.subscriptions.lock() {
            Ok(mut subs) => {
                subs.retain(|s| !s.3.is_transport_closed());
                subs.iter()
                    .filter(|s| s.0 == upstream && s.1 == uri)
                    .map(|s| (s.2.clone(), s.3.clone()))
                    .collect()
            }
            Err(_) => return,
        };
        for (exposed, peer) in targets {
            tokio::spawn(async move {
                let params = rmcp::model::ResourceUpdatedNotificationParam::new(exposed);
                if let Err(err) = peer.notify_resource_updated(params).await {
                    tracing::debug!(%err, "could not notify a client of resources/updated");
                }
            });
        }
    }

    /// Tells every connected client that the gateway's prompt list changed.
    pub fn prompts_changed(&self) {
        for peer in self.live() {
            tokio::spawn(async move {
                if let Err(err) = peer.notify_prompt_list_changed().await {
                    tracing::debug!(%err, "could not notify a client of list_changed");
                }
            });
        }
    }

    /// Tells every connected client that the gateway's resource list changed.
    pub fn resources_changed(&self) {
        for peer in self.live() {
            tokio::spawn(async move {
                if let Err(err) = peer.notify_resource_list_changed().await {
                    tracing::debug!(%err, "could not notify a client of list_changed");
                }
            });
        }
    }

    fn live(&self) -> Vec<Peer<RoleServer>> {
        match self.clients.lock() {
            Ok(mut clients) => {
                clients.retain(|p| !p.is_transport_closed());
                clients.clone()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Tells every connected client that the gateway's tool list changed.
    pub fn tools_changed(&self) {
        let peers: Vec<Peer<RoleServer>> = match self.clients.lock() {
            Ok(mut clients) => {
                clients.retain(|p| !p.is_transport_closed());
                clients.clone()
            }
            Err(_) => return,
        };
        for peer in peers {
            tokio::spawn(async move {
                if let Err(err) = peer.notify_tool_list_changed().await {
                    tracing::debug!(%err, "could not notify a client of list_changed");
                }
            });
        }
    }
}

/// Whether two peers are the same session (the same handshake record).
fn same_session(a: &Peer<RoleServer>, b: &Peer<RoleServer>) -> bool {
    match (a.peer_info(), b.peer_info()) {
        (Some(a), Some(b)) => std::sync::Arc::ptr_eq(&a, &b),
        _ => false,
    }
}
