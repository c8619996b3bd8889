//! The gateway's connected clients, for notifications that fan out to all of them.
//!
//! Session-era clients receive `notifications/tools/list_changed` on their session when any
//! upstream's tool list changes; a client whose session has closed is dropped on the next send.

use std::sync::Mutex;

use rmcp::{Peer, RoleServer};

#[derive(Default)]
pub struct Hub {
    clients: Mutex<Vec<Peer<RoleServer>>>,
}

impl Hub {
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
