//! Token buckets for what a stranger can make the gateway do: answer (ICMP errors, echo
//! replies, GTP-U Echo Responses) or hand up to the control thread. Each worker owns its
//! buckets, so there is nothing shared on the packet path; the clock is read only when a
//! bucket is asked, which happens only for packets that would cost a reply or a hand-up.
//!
//! The shape is Linux's `icmp_global_allow` (net/ipv4/icmp.c): a rate of tokens per second
//! and a burst, with the defaults of `net.ipv4.icmp_msgs_per_sec` and `icmp_msgs_burst`.

use std::time::Instant;

/// Linux's `net.ipv4.icmp_msgs_per_sec` default.
pub const DEFAULT_ICMP_RATE: u32 = 1000;
/// Linux's `net.ipv4.icmp_msgs_burst` default.
pub const DEFAULT_ICMP_BURST: u32 = 50;

/// A rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Tokens per second (0: nothing passes).
    pub rate: u32,
    /// The most tokens saved up.
    pub burst: u32,
}

impl Limit {
    /// The ICMP default (1000/s, burst 50).
    pub const ICMP: Limit = Limit {
        rate: DEFAULT_ICMP_RATE,
        burst: DEFAULT_ICMP_BURST,
    };
}

/// One bucket. Time is in microseconds since the bucket's own epoch, so tests can drive it.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens in millionths, so that a rate of a few per second still refills smoothly.
    micro_tokens: u64,
    last_us: u64,
    epoch: Instant,
    started: bool,
}

impl Default for TokenBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenBucket {
    /// A full bucket (its burst is available at once).
    pub fn new() -> Self {
        TokenBucket {
            micro_tokens: 0,
            last_us: 0,
            epoch: Instant::now(),
            started: false,
        }
    }

    /// Whether one more passes under `limit` now (reads the clock).
    #[inline]
    pub fn allow(&mut self, limit: Limit) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.allow_at(limit, now)
    }

    /// Whether one more passes under `limit` at `now_us` (microseconds since the epoch).
    pub fn allow_at(&mut self, limit: Limit, now_us: u64) -> bool {
        let cap = u64::from(limit.burst).saturating_mul(1_000_000);
        if !self.started {
            self.started = true;
            self.micro_tokens = cap;
            self.last_us = now_us;
        }
        let elapsed = now_us.saturating_sub(self.last_us);
        self.last_us = self.last_us.max(now_us);
        self.micro_tokens = self
            .micro_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(limit.rate)))
            .min(cap);
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_passes_its_burst_then_its_rate() {
        let mut b = TokenBucket::new();
        let l = Limit {
            rate: 100,
            burst: 10,
        };
        let passed = (0..1000).filter(|_| b.allow_at(l, 0)).count();
        assert_eq!(passed, 10);
        // One second later: 100 more, not 1000.
        let passed = (0..1000).filter(|_| b.allow_at(l, 1_000_000)).count();
        assert_eq!(passed, 10); // refilled up to the burst only
        let mut passed = 0;
        for ms in 1000..2000u64 {
            passed += usize::from(b.allow_at(l, ms * 1000));
        }
        assert!((99..=101).contains(&passed), "{passed}");
        // A zero rate lets nothing through once the burst is spent.
        let mut z = TokenBucket::new();
        let zero = Limit { rate: 0, burst: 2 };
        assert_eq!((0..10).filter(|_| z.allow_at(zero, 5)).count(), 2);
    }
}
