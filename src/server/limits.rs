//! How many connections may be open at once: in total (`server.max_connections`) and per
//! client (`server.max_connections_per_address`, keyed like the rate limit: an IPv4 address or
//! an IPv6 /64). A connection holds its [`Slot`] for as long as its socket is open — a
//! WebSocket too, after the upgrade — and gives it back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::api::{client_key, ConnectionRefusal};

/// The caps and the connections open now.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Only clients with a connection open: the map is bounded by `max_total`.
    per_address: HashMap<IpAddr, usize>,
}

impl ConnectionLimits {
    pub(crate) fn new(max_total: usize, max_per_address: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for a connection from `peer`, or which cap it would exceed.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, ConnectionRefusal> {
        let key = client_key(Some(peer));
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(ConnectionRefusal::Total(self.max_total));
        }
        let from_peer = open.per_address.entry(key).or_default();
        if *from_peer >= self.max_per_address {
            return Err(ConnectionRefusal::PerAddress(self.max_per_address));
        }
        *from_peer += 1;
        open.total += 1;
        Ok(Slot {
            limits: Arc::clone(self),
            key,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().total
    }

    /// The counts stay right even if a thread panicked while holding the lock: every update
    /// is complete before anything that could panic.
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place under the caps, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_address.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_address.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn each_cap_refuses_one_over_and_a_closed_slot_is_free_again() {
        let limits = ConnectionLimits::new(3, 2);
        let a = limits.admit(ip("10.0.0.1")).unwrap();
        let _b = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.1")).unwrap_err(),
            ConnectionRefusal::PerAddress(2)
        );
        let _c = limits.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.3")).unwrap_err(),
            ConnectionRefusal::Total(3)
        );
        drop(a);
        assert_eq!(limits.open(), 2);
        let _d = limits.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn one_ipv6_64_is_one_client_and_the_map_forgets_closed_clients() {
        let limits = ConnectionLimits::new(10, 1);
        let first = limits.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(
            limits.admit(ip("2001:db8::2")).unwrap_err(),
            ConnectionRefusal::PerAddress(1)
        );
        let _other = limits.admit(ip("2001:db8:0:1::1")).unwrap();
        drop(first);
        assert_eq!(limits.lock().per_address.len(), 1);
    }
}
