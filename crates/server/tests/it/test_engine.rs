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
}

impl TestEngine {
    pub fn set_fail(&self, m: FailMode) {
        *self.fail.lock().unwrap() = Some(m);
    }
    pub fn set_state(&self, engine_id: &str, s: RunState) {
        self.sandboxes.lock().unwrap().insert(engine_id.into(), s);
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
        Capabilities::default()
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
    async fn pause(&self, _engine_id: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn resume(&self, _engine_id: &str) -> Result<(), EngineError> {
        Ok(())
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
}
