//! Per-user API rate limits: token buckets in memory, in a map of bounded size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Tokens available at once.
    pub burst: u32,
    /// Refill rate.
    pub per_minute: u32,
}

/// Rate limits of every request class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `POST /sandboxes`.
    pub create: BucketConfig,
    /// `POST …/exec…`, `PUT …/files…`, anything with `/ws`.
    pub exec: BucketConfig,
    /// Everything else.
    pub other: BucketConfig,
    /// Users tracked at once; the least recently seen is evicted beyond this.
    pub max_users: usize,
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// Sandbox creation.
    Create,
    /// Exec, file writes and WebSockets.
    Exec,
    /// Everything else.
    Other,
}

impl RequestClass {
    /// Classifies by method and path, as the reference does.
    pub fn of(method: &str, path: &str) -> Self {
        if method == "POST" && path == "/sandboxes" {
            RequestClass::Create
        } else if (method == "POST" && path.contains("/exec"))
            || (method == "PUT" && path.contains("/files"))
            || path.contains("/ws")
        {
            RequestClass::Exec
        } else {
            RequestClass::Other
        }
    }
}

/// A token bucket; pure arithmetic on the instants it is given.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(cfg: BucketConfig, now: Instant) -> Self {
        Self {
            tokens: f64::from(cfg.burst),
            last: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, cfg: BucketConfig, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(cfg.per_minute) / 60.0; // tokens per second
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(cfg.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if rate <= 0.0 {
            Err(Duration::from_secs(60))
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

struct Entry {
    buckets: [Option<TokenBucket>; 3],
    seen: Instant,
}

/// Buckets per user and class, for at most `max_users` users.
pub struct RateLimiter {
    cfg: RateLimitConfig,
    users: Mutex<HashMap<String, Entry>>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self {
            cfg,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `user` in `class`; `Err(retry_after)` when exhausted.
    pub fn check(&self, user: &str, class: RequestClass) -> Result<(), Duration> {
        self.check_at(user, class, Instant::now())
    }

    fn check_at(&self, user: &str, class: RequestClass, now: Instant) -> Result<(), Duration> {
        let (idx, bcfg) = match class {
            RequestClass::Create => (0, self.cfg.create),
            RequestClass::Exec => (1, self.cfg.exec),
            RequestClass::Other => (2, self.cfg.other),
        };
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if !users.contains_key(user) && users.len() >= self.cfg.max_users.max(1) {
            // Evict the least recently seen user. O(n), but only when the map is full.
            if let Some(oldest) = users
                .iter()
                .min_by_key(|(_, e)| e.seen)
                .map(|(k, _)| k.clone())
            {
                users.remove(&oldest);
            }
        }
        let entry = users.entry(user.to_string()).or_insert_with(|| Entry {
            buckets: [None, None, None],
            seen: now,
        });
        entry.seen = now;
        entry.buckets[idx]
            .get_or_insert_with(|| TokenBucket::new(bcfg, now))
            .try_take(bcfg, now)
    }

    /// Users currently tracked.
    pub fn tracked_users(&self) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Token buckets keyed by a string (an IP, an alias), at most `max` keys: the least recently
/// seen key is evicted beyond that, so a flood of distinct keys cannot grow memory.
pub struct KeyedBuckets {
    max: usize,
    map: Mutex<HashMap<String, (TokenBucket, Instant)>>,
}

impl KeyedBuckets {
    /// An empty map of at most `max` keys.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket; `Err(retry_after)` when empty.
    pub fn take(&self, key: &str, cfg: BucketConfig, now: Instant) -> Result<(), Duration> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(key) && map.len() >= self.max {
            // O(n), but only when the map is full.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let (b, seen) = map
            .entry(key.to_string())
            .or_insert_with(|| (TokenBucket::new(cfg, now), now));
        *seen = now;
        b.try_take(cfg, now)
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BucketConfig = BucketConfig {
        burst: 10,
        per_minute: 30,
    };

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(CFG, t0);
        for _ in 0..10 {
            b.try_take(CFG, t0).unwrap();
        }
        let wait = b.try_take(CFG, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}"); // 30/min = one per 2 s
        assert!(b.try_take(CFG, t0 + Duration::from_millis(1999)).is_err());
        assert!(b.try_take(CFG, t0 + Duration::from_secs(3)).is_ok());
    }

    #[test]
    fn refill_caps_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(CFG, t0);
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..10 {
            b.try_take(CFG, later).unwrap();
        }
        assert!(b.try_take(CFG, later).is_err());
    }

    #[test]
    fn classes() {
        assert_eq!(RequestClass::of("POST", "/sandboxes"), RequestClass::Create);
        assert_eq!(
            RequestClass::of("POST", "/sandboxes/x/exec"),
            RequestClass::Exec
        );
        assert_eq!(
            RequestClass::of("PUT", "/sandboxes/x/files"),
            RequestClass::Exec
        );
        assert_eq!(
            RequestClass::of("GET", "/sandboxes/x/ws"),
            RequestClass::Exec
        );
        assert_eq!(RequestClass::of("GET", "/sandboxes"), RequestClass::Other);
        assert_eq!(
            RequestClass::of("DELETE", "/sandboxes/x"),
            RequestClass::Other
        );
    }

    #[test]
    fn users_independent_and_map_bounded() {
        let cfg = RateLimitConfig {
            max_users: 3,
            ..RateLimitConfig::default()
        };
        let rl = RateLimiter::new(cfg);
        let t0 = Instant::now();
        for _ in 0..10 {
            rl.check_at("a", RequestClass::Create, t0).unwrap();
        }
        assert!(rl.check_at("a", RequestClass::Create, t0).is_err());
        assert!(rl.check_at("b", RequestClass::Create, t0).is_ok());
        assert!(rl.check_at("a", RequestClass::Other, t0).is_ok());
        for (i, u) in ["c", "d", "e", "f"].iter().enumerate() {
            rl.check_at(
                u,
                RequestClass::Other,
                t0 + Duration::from_secs(i as u64 + 1),
            )
            .unwrap();
        }
        assert_eq!(rl.tracked_users(), 3);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over any schedule, grants never exceed burst + rate × elapsed.
        #[test]
        fn never_exceeds_budget(burst in 1u32..50, per_minute in 1u32..2000,
                                steps in proptest::collection::vec(0u64..5000, 1..200)) {
            let cfg = BucketConfig { burst, per_minute };
            let t0 = Instant::now();
            let mut b = TokenBucket::new(cfg, t0);
            let mut now = t0;
            let mut granted = 0u64;
            for ms in steps {
                now += Duration::from_millis(ms);
                if b.try_take(cfg, now).is_ok() { granted += 1; }
            }
            let elapsed = now.duration_since(t0).as_secs_f64();
            let budget = f64::from(burst) + elapsed * f64::from(per_minute) / 60.0;
            prop_assert!(granted as f64 <= budget + 1e-9);
        }

        /// A refusal's Retry-After is honest: waiting that long yields a token.
        #[test]
        fn retry_after_is_enough(burst in 1u32..20, per_minute in 1u32..2000) {
            let cfg = BucketConfig { burst, per_minute };
            let t0 = Instant::now();
            let mut b = TokenBucket::new(cfg, t0);
            for _ in 0..burst { b.try_take(cfg, t0).unwrap(); }
            let wait = b.try_take(cfg, t0).unwrap_err();
            prop_assert!(b.try_take(cfg, t0 + wait + Duration::from_micros(1)).is_ok());
        }
    }
}
