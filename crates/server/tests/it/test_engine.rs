//! An in-memory engine for router tests. Lives only in tests; never shipped.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bhatti_engine::{
    AgentEndpoint, Capabilities, Created, Engine, EngineError, RunState, SandboxSpec,
};

/// How `create` should fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    Io,
}

#[derive(Default)]
pub struct TestEngine {
    pub sandboxes: Mutex<HashMap<String, RunState>>,
    pub specs: Mutex<Vec<SandboxSpec>>,
    pub destroyed: Mutex<Vec<String>>,
    pub fail: Mutex<Option<FailMode>>,
    /// Where `agent()` points (a real lohar in test mode), if set.
    pub agent: Mutex<Option<AgentEndpoint>>,
    /// Every pause/resume/stop/start call, as `"pause:<engine id>"` etc.
    pub calls: Mutex<Vec<String>>,
    /// Fake cumulative CPU usage (µs) per engine id, returned by `usage`.
    pub cpu: Mutex<HashMap<String, u64>>,
    /// How long `resume` takes (ms).
    pub resume_delay_ms: std::sync::atomic::AtomicU64,
    /// Whether `resume` fails.
    pub resume_fails: std::sync::atomic::AtomicBool,
    /// Whether it claims `snapshot_memory` (then `snapshot` records a call and sets Paused).
    pub snapshots: std::sync::atomic::AtomicBool,
}

impl TestEngine {
    pub fn set_fail(&self, m: FailMode) {
        *self.fail.lock().unwrap() = Some(m);
    }
    pub fn set_state(&self, engine_id: &str, s: RunState) {
        self.sandboxes.lock().unwrap().insert(engine_id.into(), s);
    }
    pub fn count(&self, call: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with(&format!("{call}:")))
            .count()
    }
    pub fn add_cpu(&self, engine_id: &str, usec: u64) {
        *self
            .cpu
            .lock()
            .unwrap()
            .entry(engine_id.into())
            .or_default() += usec;
    }
    pub fn last_spec(&self) -> SandboxSpec {
        self.specs
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no create")
    }
}

#[async_trait]
impl Engine for TestEngine {
    fn name(&self) -> &'static str {
        "test"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause: true,
            snapshot_memory: self.snapshots.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        if *self.fail.lock().unwrap() == Some(FailMode::Io) {
            return Err(EngineError::Io {
                step: "mount overlay at /very/secret/path".into(),
                source: std::io::Error::other("disk on fire"),
            });
        }
        self.specs.lock().unwrap().push(spec.clone());
        let engine_id = format!("e{}", spec.id);
        self.sandboxes
            .lock()
            .unwrap()
            .insert(engine_id.clone(), RunState::Running);
        Ok(Created {
            engine_id,
            ip: Some("10.0.1.2".parse().unwrap()),
            meta: serde_json::json!({"pid": 42}),
        })
    }
    async fn destroy(&self, engine_id: &str) -> Result<(), EngineError> {
        self.sandboxes.lock().unwrap().remove(engine_id);
        self.destroyed.lock().unwrap().push(engine_id.into());
        Ok(())
    }
    async fn state(&self, engine_id: &str) -> Result<RunState, EngineError> {
        Ok(*self
            .sandboxes
            .lock()
            .unwrap()
            .get(engine_id)
            .unwrap_or(&RunState::Missing))
    }
    async fn pause(&self, engine_id: &str) -> Result<(), EngineError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("pause:{engine_id}"));
        self.set_state(engine_id, RunState::Paused);
        Ok(())
    }
    async fn snapshot(&self, engine_id: &str) -> Result<(), EngineError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("snapshot:{engine_id}"));
        self.set_state(engine_id, RunState::Paused);
        Ok(())
    }
    async fn resume(&self, engine_id: &str) -> Result<(), EngineError> {
        use std::sync::atomic::Ordering;
        self.calls
            .lock()
            .unwrap()
            .push(format!("resume:{engine_id}"));
        let delay = self.resume_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.resume_fails.load(Ordering::SeqCst) {
            return Err(EngineError::Io {
                step: "thaw".into(),
                source: std::io::Error::other("freezer stuck"),
            });
        }
        self.set_state(engine_id, RunState::Running);
        Ok(())
    }
    async fn stop(&self, engine_id: &str) -> Result<(), EngineError> {
        self.calls.lock().unwrap().push(format!("stop:{engine_id}"));
        self.set_state(engine_id, RunState::Stopped);
        Ok(())
    }
    async fn start(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("start:{}", spec.id));
        self.set_state(&spec.id, RunState::Running);
        Ok(Created {
            engine_id: spec.id.clone(),
            ip: Some("10.0.1.2".parse().unwrap()),
            meta: serde_json::json!({"pid": 43}),
        })
    }
    async fn usage(&self, engine_id: &str) -> Option<u64> {
        if !self.sandboxes.lock().unwrap().contains_key(engine_id) {
            return None;
        }
        Some(*self.cpu.lock().unwrap().get(engine_id).unwrap_or(&0))
    }
    async fn agent(&self, engine_id: &str) -> Result<AgentEndpoint, EngineError> {
        if !self.sandboxes.lock().unwrap().contains_key(engine_id) {
            return Err(EngineError::NotFound(engine_id.into()));
        }
        self.agent
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))
    }
    /// Re-adopts the sandboxes it still has (in whatever state they are), like a real engine
    /// after a daemon restart; the others are lost.
    async fn recover(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        let have = self.sandboxes.lock().unwrap().clone();
        sandboxes
            .into_iter()
            .map(|s| {
                let r = if have.contains_key(&s.id) {
                    Ok(Created {
                        engine_id: s.id.clone(),
                        ip: Some("10.0.1.2".parse().unwrap()),
                        meta: serde_json::json!({"pid": 42}),
                    })
                } else {
                    Err(EngineError::NotFound(s.id.clone()))
                };
                (s.id, r)
            })
            .collect()
    }
}
