//! The thermal manager: idle sandboxes cool down by themselves, any operation wakes them.
//!
//! - **hot**: processes run.
//! - **warm**: every process frozen (cgroup freezer); costs no CPU, keeps its memory.
//! - **cold**: memory snapshotted to disk (`Engine::snapshot`) after `thermal.cold_after_ms`
//!   warm; the engine process holding it is gone, a wake restores it (`Engine::resume`). Only
//!   engines with `capabilities().snapshot_memory` (the vm engine) go there; on the others a
//!   warm sandbox stays warm and its `thermal_reason` says why.
//!
//! A loop ticks every `thermal.tick_ms`. A hot sandbox goes warm when, for `thermal.warm_after_ms`:
//! no host-side API operation touched it, its lohar reports no activity and no attached session,
//! and its cgroup used less than `thermal.busy_cpu_percent` of one CPU between ticks (a
//! background job keeps it hot). `keep_hot` sandboxes never cool.
//!
//! Every operation that needs the sandbox calls [`ensure_hot`] (through
//! `service::agent::open`) and holds the [`Busy`] it returns until the operation ends, so a
//! sandbox is never frozen under a request in flight; concurrent wakes of one sandbox coalesce
//! behind a per-sandbox async mutex (which pausing and snapshotting hold too), and a wake is
//! bounded by `thermal.wake_timeout_ms`.
//!
//! State lives in memory; the engine (a frozen cgroup) is the persisted truth. After a daemon
//! restart a sandbox first seen frozen is taken as warm, so re-adopted warm sandboxes stay warm
//! until an operation wakes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bhatti_engine::agent::AgentClient;
use bhatti_engine::RunState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use crate::service::ServiceError;
use crate::state::AppState;
use crate::store::events::NewEvent;
use crate::store::sandboxes::SandboxRow;

/// Thermal settings (`thermal:` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThermalConfig {
    /// Whether the manager runs at all.
    pub enabled: bool,
    /// Milliseconds between ticks.
    pub tick_ms: u64,
    /// Idle milliseconds before hot → warm.
    pub warm_after_ms: u64,
    /// Milliseconds warm before warm → cold (engines that can snapshot memory only).
    pub cold_after_ms: u64,
    /// CPU use between ticks, in percent of one CPU, at or above which a sandbox counts as busy.
    pub busy_cpu_percent: f64,
    /// Milliseconds a wake may take before the operation fails.
    pub wake_timeout_ms: u64,
}

impl Default for ThermalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_ms: 10_000,
            warm_after_ms: 30_000,
            cold_after_ms: 30 * 60 * 1000,
            busy_cpu_percent: 1.0,
            wake_timeout_ms: 10_000,
        }
    }
}

/// Thermal state of a running sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temp {
    /// Running.
    Hot,
    /// Frozen.
    Warm,
    /// Snapshotted.
    Cold,
}

impl Temp {
    /// API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Temp::Hot => "hot",
            Temp::Warm => "warm",
            Temp::Cold => "cold",
        }
    }
}

struct Inner {
    temp: Temp,
    /// Last host-side operation (or wake, or observed activity).
    last_active: Instant,
    /// CPU usec at the previous tick and when it was read.
    last_cpu: Option<(u64, Instant)>,
    warm_since: Option<Instant>,
    reason: Option<String>,
    /// Whether the engine's view was taken into account (see [`learn`]).
    known: bool,
    /// Consecutive ticks that found the agent silent and the engine reporting the sandbox
    /// gone; two are needed before the record says so.
    seen_dead: u8,
}

impl Inner {
    /// Running again from now: a fresh idle period and CPU baseline.
    fn set_hot(&mut self) {
        self.temp = Temp::Hot;
        self.last_active = Instant::now();
        self.last_cpu = None;
        self.warm_since = None;
        self.reason = None;
    }
}

struct Entry {
    inner: Mutex<Inner>,
    /// Host-side operations in progress (e.g. a quiet `exec sleep 60`): never cool meanwhile.
    inflight: std::sync::atomic::AtomicUsize,
    /// Serialises wake and pause of this sandbox: concurrent wakes coalesce into one.
    gate: tokio::sync::Mutex<()>,
}

/// In-memory thermal state of every running sandbox, by sandbox id.
#[derive(Default)]
pub struct Thermal {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

fn new_entry() -> Arc<Entry> {
    Arc::new(Entry {
        inner: Mutex::new(Inner {
            temp: Temp::Hot,
            last_active: Instant::now(),
            last_cpu: None,
            warm_since: None,
            reason: None,
            known: false,
            seen_dead: 0,
        }),
        gate: tokio::sync::Mutex::new(()),
        inflight: std::sync::atomic::AtomicUsize::new(0),
    })
}

impl Thermal {
    fn entry(&self, id: &str) -> Arc<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_insert_with(new_entry)
            .clone()
    }

    /// Records a sandbox this daemon just started (create or start): hot, and known to be, so
    /// its first operation does not ask the engine.
    pub fn started(&self, id: &str) {
        let e = self.entry(id);
        let mut i = lock(&e);
        i.set_hot();
        i.known = true;
        i.seen_dead = 0;
    }

    fn peek(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The state shown by metadata reads (never wakes): (thermal, reason).
    pub fn view(&self, id: &str) -> (Temp, Option<String>) {
        match self.peek(id) {
            Some(e) => {
                let i = e.inner.lock().unwrap_or_else(|e| e.into_inner());
                (i.temp, i.reason.clone())
            }
            None => (Temp::Hot, None),
        }
    }

    /// Forgets a sandbox (destroyed or stopped); an entry with operations in flight stays
    /// until they end, so their `Busy` keeps counting where the tick looks.
    pub fn forget(&self, id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.get(id).is_some_and(|e| !busy_now(e)) {
            entries.remove(id);
        }
    }
}

/// Marks an operation on a sandbox in progress until dropped; the sandbox does not cool
/// meanwhile, and its idle period starts when the operation ends.
pub struct Busy(Arc<Entry>);

impl Drop for Busy {
    fn drop(&mut self) {
        lock(&self.0).last_active = Instant::now();
        self.0
            .inflight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// See [`Busy`]; taken through [`ensure_hot`].
fn busy(st: &AppState, sandbox_id: &str) -> Busy {
    let e = st.thermal.entry(sandbox_id);
    e.inflight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Busy(e)
}

fn busy_now(e: &Entry) -> bool {
    e.inflight.load(std::sync::atomic::Ordering::SeqCst) > 0
}

fn lock(e: &Entry) -> std::sync::MutexGuard<'_, Inner> {
    e.inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes sure a running sandbox is hot before an operation uses it, and holds it hot until
/// the returned [`Busy`] is dropped: callers keep it for the whole operation (a slow file write
/// into a TCG VM outlasts the idle period, and freezing the guest mid-request stalls its TCP).
/// Concurrent callers share one wake; a failed or slow wake is an error.
pub async fn ensure_hot(st: &AppState, row: &SandboxRow) -> Result<Busy, ServiceError> {
    // Counted first, then the gate: a pause that has not checked yet sees the operation and
    // backs off; one already under way holds the gate, so this waits and wakes it again.
    let busy = busy(st, &row.id);
    let entry = busy.0.clone();
    lock(&entry).last_active = Instant::now();
    let timeout = Duration::from_millis(st.config.thermal.wake_timeout_ms);
    let woke = tokio::time::timeout(timeout, async {
        let _g = entry.gate.lock().await;
        learn(st, row, &entry).await;
        let from = lock(&entry).temp;
        if from == Temp::Hot {
            // Hot already, or another request woke it while this one waited.
            return Ok(None);
        }
        st.engine.resume(&row.engine_id).await?;
        lock(&entry).set_hot();
        Ok::<_, bhatti_engine::EngineError>(Some(from))
    })
    .await;
    match woke {
        Ok(Ok(Some(from))) => {
            tracing::debug!(sandbox = %row.id, from = from.as_str(), "woke");
            st.record(NewEvent::new(
                "thermal.wake",
                &row.created_by,
                &row.id,
                json!({"name": row.name, "from": from.as_str()}),
            ));
            Ok(busy)
        }
        Ok(Ok(None)) => Ok(busy),
        Ok(Err(e)) => Err(ServiceError::WakeFailed(format!(
            "sandbox {:?} could not be woken: {e}",
            row.name
        ))),
        Err(_) => Err(ServiceError::WakeFailed(format!(
            "sandbox {:?} did not wake within {} ms",
            row.name,
            timeout.as_millis()
        ))),
    }
}

/// Pauses a running sandbox now (E2B's pause): it goes warm at once, whatever its activity,
/// and stays so until an operation wakes it.
pub async fn pause_now(st: &AppState, row: &SandboxRow) -> Result<(), ServiceError> {
    let (engine, caps) = engine_of(st, row);
    if !caps.pause {
        return Err(ServiceError::Conflict(format!(
            "the {engine} engine cannot pause sandboxes"
        )));
    }
    let entry = st.thermal.entry(&row.id);
    let _g = entry.gate.lock().await;
    if lock(&entry).temp != Temp::Hot {
        return Ok(());
    }
    st.engine.pause(&row.engine_id).await?;
    {
        let mut i = lock(&entry);
        i.temp = Temp::Warm;
        i.warm_since = Some(Instant::now());
        i.reason = cold_reason(st, row);
    }
    st.record(NewEvent::new(
        "thermal.pause",
        &row.created_by,
        &row.id,
        json!({"name": row.name, "to": "warm", "reason": "requested"}),
    ));
    Ok(())
}

/// Runs ticks until `stop` turns true.
pub async fn run(st: AppState, mut stop: watch::Receiver<bool>) {
    if !st.config.thermal.enabled {
        return;
    }
    let period = Duration::from_millis(st.config.thermal.tick_ms.max(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        if let Err(e) = tick(&st).await {
            tracing::warn!(error = %e, "thermal tick failed");
        }
    }
}

/// One pass over every running sandbox.
pub async fn tick(st: &AppState) -> Result<(), ServiceError> {
    let rows = st
        .store
        .call(|c| crate::store::sandboxes::running(c))
        .await?;
    let live: std::collections::HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    st.thermal
        .entries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|id, e| live.contains(id) || busy_now(e));
    // Sandboxes are independent: check them concurrently so one slow lohar cannot stall the rest.
    let checks = rows.into_iter().map(|row| {
        let st = st.clone();
        async move {
            if let Err(e) = check(&st, &row).await {
                tracing::debug!(sandbox = %row.id, error = %e, "thermal check failed");
            }
        }
    });
    futures_util::future::join_all(checks).await;
    Ok(())
}

async fn check(st: &AppState, row: &SandboxRow) -> Result<(), ServiceError> {
    let cfg = &st.config.thermal;
    let entry = st.thermal.entry(&row.id);
    if !lock(&entry).known {
        let _g = entry.gate.lock().await;
        learn(st, row, &entry).await;
    }
    let temp = lock(&entry).temp;
    if row.keep_hot {
        if temp != Temp::Hot {
            ensure_hot(st, row).await?;
        }
        lock(&entry).reason = Some("keep_hot".into());
        return Ok(());
    }
    match temp {
        Temp::Hot => {}
        Temp::Warm => {
            let warm_for = lock(&entry).warm_since.map(|t| t.elapsed());
            if engine_of(st, row).1.snapshot_memory
                && warm_for.is_some_and(|d| d >= Duration::from_millis(cfg.cold_after_ms))
            {
                cool(st, row, &entry).await?;
            }
            return Ok(());
        }
        Temp::Cold => return Ok(()),
    }

    let now = Instant::now();
    let idle = Duration::from_millis(cfg.warm_after_ms);
    // CPU: real work (a background job) keeps it hot.
    if let Some(usec) = st.engine.usage(&row.engine_id).await {
        let mut i = lock(&entry);
        if let Some((prev, at)) = i.last_cpu {
            let wall_usec = now.duration_since(at).as_micros().max(1) as f64;
            let pct = usec.saturating_sub(prev) as f64 * 100.0 / wall_usec;
            if pct >= cfg.busy_cpu_percent {
                i.last_active = now;
            }
        } else {
            // No baseline yet: this tick cannot tell, so it does not cool.
            i.last_cpu = Some((usec, now));
            return Ok(());
        }
        i.last_cpu = Some((usec, now));
    }
    {
        let mut i = lock(&entry);
        if busy_now(&entry) {
            i.last_active = now;
        }
        if now.duration_since(i.last_active) < idle {
            i.reason = None;
            return Ok(());
        }
    }
    // lohar: attached sessions and in-sandbox activity (exec, files, session input).
    let activity = match st.engine.agent(&row.engine_id).await {
        Ok(ep) => {
            match tokio::time::timeout(Duration::from_secs(2), AgentClient::new(ep).activity())
                .await
            {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("no answer within 2 s".to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match activity {
        Ok(a) => {
            lock(&entry).seen_dead = 0;
            let now_unix = chrono::Utc::now().timestamp_millis();
            let age_ms = now_unix.saturating_sub(a.last_activity_unix.saturating_mul(1000));
            if a.attached_sessions > 0
                || (a.last_activity_unix > 0 && (age_ms as u64) < cfg.warm_after_ms)
            {
                let mut i = lock(&entry);
                i.reason = Some(if a.attached_sessions > 0 {
                    "a session is attached".into()
                } else {
                    "recent activity in the sandbox".into()
                });
                if a.attached_sessions > 0 {
                    i.last_active = now;
                }
                return Ok(());
            }
        }
        // An agent that does not answer is not doing work for anyone; CPU and API idleness
        // decide. It may also have died with its sandbox: then, seen so on two ticks in a row
        // (one failed probe is not enough), the record says so from now on (as an inspect
        // would), and there is nothing to pause.
        Err(why) => {
            tracing::debug!(sandbox = %row.id, why, "activity unavailable");
            match st.engine.state(&row.engine_id).await {
                Ok(state @ (RunState::Stopped | RunState::Missing)) => {
                    let seen = {
                        let mut i = lock(&entry);
                        i.seen_dead = i.seen_dead.saturating_add(1);
                        i.seen_dead
                    };
                    if seen >= 2 {
                        let mut row = row.clone();
                        if crate::service::sandboxes::sync_status(st, &mut row, state).await? {
                            tracing::warn!(sandbox = %row.id, status = %row.status, "sandbox died on its own");
                        }
                    }
                    return Ok(());
                }
                _ => lock(&entry).seen_dead = 0,
            }
        }
    }
    pause(st, row, &entry, idle).await
}

/// Takes the engine's view of a sandbox this daemon did not start (first seen after a daemon
/// restart): one found frozen is warm, and stays so until an operation wakes it. Once per
/// entry; call with the entry's gate held, so a wake or pause cannot interleave.
async fn learn(st: &AppState, row: &SandboxRow, entry: &Entry) {
    if lock(entry).known {
        return;
    }
    let paused = matches!(st.engine.state(&row.engine_id).await, Ok(RunState::Paused));
    let mut i = lock(entry);
    if paused {
        i.temp = Temp::Warm;
        i.warm_since = Some(Instant::now());
        i.reason = cold_reason(st, row);
    }
    i.known = true;
}

/// Warm → cold: the engine writes the sandbox's memory to disk and releases it.
async fn cool(st: &AppState, row: &SandboxRow, entry: &Entry) -> Result<(), ServiceError> {
    let _g = entry.gate.lock().await;
    if lock(entry).temp != Temp::Warm || busy_now(entry) {
        return Ok(());
    }
    let t0 = Instant::now();
    st.engine.snapshot(&row.engine_id).await?;
    let warm_s = {
        let mut i = lock(entry);
        i.temp = Temp::Cold;
        i.reason = None;
        i.warm_since.map(|t| t.elapsed().as_secs()).unwrap_or(0)
    };
    tracing::debug!(sandbox = %row.id, took = ?t0.elapsed(), "snapshotted (cold)");
    st.record(NewEvent::new(
        "thermal.cool",
        &row.created_by,
        &row.id,
        json!({"name": row.name, "to": "cold", "warm_s": warm_s}),
    ));
    Ok(())
}

/// The engine running a sandbox (its name in the store; the daemon's default for old rows) and
/// what that engine can do: with several engines enabled, each sandbox cools as far as its own
/// engine allows.
fn engine_of(st: &AppState, row: &SandboxRow) -> (String, bhatti_engine::Capabilities) {
    let name = if row.engine.is_empty() {
        st.engine.name().to_string()
    } else {
        row.engine.clone()
    };
    let caps = st
        .engine
        .engines()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| st.engine.capabilities());
    (name, caps)
}

fn cold_reason(st: &AppState, row: &SandboxRow) -> Option<String> {
    let (engine, caps) = engine_of(st, row);
    if caps.snapshot_memory {
        None
    } else {
        Some(format!(
            "stays warm: the {engine} engine cannot snapshot memory"
        ))
    }
}

async fn pause(
    st: &AppState,
    row: &SandboxRow,
    entry: &Entry,
    idle: Duration,
) -> Result<(), ServiceError> {
    if !engine_of(st, row).1.pause {
        return Ok(());
    }
    let _g = entry.gate.lock().await;
    {
        // A request may have arrived since the checks.
        let i = lock(entry);
        if i.temp != Temp::Hot || i.last_active.elapsed() < idle || busy_now(entry) {
            return Ok(());
        }
    }
    st.engine.pause(&row.engine_id).await?;
    let idle_s = {
        let mut i = lock(entry);
        let idle_s = i.last_active.elapsed().as_secs();
        i.temp = Temp::Warm;
        i.warm_since = Some(Instant::now());
        i.reason = cold_reason(st, row);
        idle_s
    };
    tracing::debug!(sandbox = %row.id, "paused (warm)");
    st.record(NewEvent::new(
        "thermal.pause",
        &row.created_by,
        &row.id,
        json!({"name": row.name, "to": "warm", "idle_s": idle_s}),
    ));
    Ok(())
}
