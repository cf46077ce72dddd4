//! The per-client rate limit: one GCRA bucket (governor) per client address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Checks between two sweeps of idle buckets. The map therefore holds at most the clients
/// seen within one refill period plus this many: bounded by the request rate, whatever the
/// number of distinct addresses.
const SWEEP_EVERY: u32 = 4096;

/// `rate_limit_per_second` sustained, `rate_limit_burst` at once, per client.
pub(crate) struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU32,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("clients", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// `None` when either setting is 0 (the limit is off).
    pub(crate) fn new(per_second: u32, burst: u32) -> Option<RateLimit> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst)?;
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Some(RateLimit {
            limiter: DefaultKeyedRateLimiter::dashmap(quota),
            clock: DefaultClock::default(),
            checks: AtomicU32::new(0),
        })
    }

    /// Takes one request from `peer`'s bucket; `Err(wait)` when it is empty, with the time
    /// until the next request would pass.
    pub(crate) fn check(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        self.sweep_now_and_then();
        let key = client_key(peer);
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    fn sweep_now_and_then(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.limiter.len()
    }
}

/// The bucket a peer draws from: its IPv4 address, or its IPv6 /64 — one host usually holds
/// a whole /64 and could otherwise take a fresh bucket per request. An IPv4-mapped address
/// counts as the IPv4 one. No address (not a TCP peer) shares one bucket.
pub(crate) fn client_key(peer: Option<IpAddr>) -> IpAddr {
    match peer {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least 1 (0 would invite a retry
/// that is refused again).
pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_turns_the_limit_off() {
        assert!(RateLimit::new(0, 10).is_none());
        assert!(RateLimit::new(10, 0).is_none());
        assert!(RateLimit::new(1, 1).is_some());
    }

    #[test]
    fn a_burst_passes_then_the_client_waits_about_one_period() {
        let limit = RateLimit::new(1, 2).unwrap();
        let peer = Some("10.0.0.1".parse().unwrap());
        assert_eq!(limit.check(peer), Ok(()));
        assert_eq!(limit.check(peer), Ok(()));
        let wait = limit.check(peer).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert_eq!(limit.check(Some("10.0.0.2".parse().unwrap())), Ok(()));
    }

    #[test]
    fn an_ipv6_64_shares_one_bucket() {
        let limit = RateLimit::new(1, 1).unwrap();
        assert_eq!(limit.check(Some("2001:db8::1".parse().unwrap())), Ok(()));
        assert!(limit.check(Some("2001:db8::2".parse().unwrap())).is_err());
        assert_eq!(
            limit.check(Some("2001:db8:0:1::1".parse().unwrap())),
            Ok(())
        );
        assert_eq!(
            client_key(Some("::ffff:10.0.0.1".parse().unwrap())),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn idle_buckets_are_swept() {
        // A bucket is idle again after burst / rate: 1 ms here.
        let limit = RateLimit::new(1000, 1).unwrap();
        for n in 0..SWEEP_EVERY - 1 {
            let peer = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            assert_eq!(limit.check(Some(peer)), Ok(()));
        }
        assert_eq!(limit.clients(), usize::try_from(SWEEP_EVERY - 1).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        // This check sweeps before it draws: only its own bucket is left.
        assert_eq!(limit.check(Some("10.255.0.1".parse().unwrap())), Ok(()));
        assert_eq!(limit.clients(), 1);
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(30)), 30);
    }
}
