//! [`Router`]: several engines behind one [`Engine`], each sandbox routed to the engine that
//! runs it.
//!
//! The daemon holds one `Arc<dyn Engine>`; with several engines enabled it is a `Router`. A
//! create goes to the engine named by `SandboxSpec::engine` (empty: the default one); every
//! later operation finds the sandbox's engine by its engine id, remembered at create, start and
//! recovery. An id the router has not seen (a stopped sandbox after a daemon restart, a failed
//! create) is looked up by asking each engine for its state; `destroy` of an unknown id asks
//! every engine, since destroying an id an engine does not know is a no-op.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::spec::{AgentEndpoint, Capabilities, Created, RunState, SandboxSpec};
use crate::{Engine, EngineError};

/// Several engines, one of them the default. See the module docs.
pub struct Router {
    engines: Vec<Arc<dyn Engine>>,
    default: usize,
    /// Engine id → index into `engines`.
    owners: Mutex<HashMap<String, usize>>,
}

/// The error for a sandbox no engine knows.
fn not_found(id: &str) -> EngineError {
    EngineError::NotFound(id.to_string())
}

impl Router {
    /// A router over `engines` (names must be unique) whose default is the one named `default`.
    pub fn new(engines: Vec<Arc<dyn Engine>>, default: &str) -> Result<Router, EngineError> {
        let bad = |reason: String| EngineError::Unavailable {
            engine: default.to_string(),
            reason,
        };
        for (i, e) in engines.iter().enumerate() {
            if engines[..i].iter().any(|o| o.name() == e.name()) {
                return Err(bad(format!("engine {:?} is listed twice", e.name())));
            }
        }
        let default = engines
            .iter()
            .position(|e| e.name() == default)
            .ok_or_else(|| bad("the default engine is not among the enabled ones".into()))?;
        Ok(Router {
            engines,
            default,
            owners: Mutex::new(HashMap::new()),
        })
    }

    /// The engine with this name, if enabled.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Engine>> {
        self.engines.iter().find(|e| e.name() == name)
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Index of the engine a spec asks for; an empty name means the default.
    fn index_for_spec(&self, spec: &SandboxSpec) -> Result<usize, EngineError> {
        if spec.engine.is_empty() {
            return Ok(self.default);
        }
        self.engines
            .iter()
            .position(|e| e.name() == spec.engine)
            .ok_or_else(|| EngineError::Unavailable {
                engine: spec.engine.clone(),
                reason: format!("not enabled on this daemon (enabled: {})", self.names()),
            })
    }

    fn names(&self) -> String {
        self.engines
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn remember(&self, engine_id: &str, index: usize) {
        self.owners().insert(engine_id.to_string(), index);
    }

    /// The engine running `engine_id`: remembered, else the first engine that knows it.
    async fn owner(&self, engine_id: &str) -> Option<Arc<dyn Engine>> {
        let known = self.owners().get(engine_id).copied();
        if let Some(i) = known {
            return Some(self.engines[i].clone());
        }
        for (i, e) in self.engines.iter().enumerate() {
            if matches!(e.state(engine_id).await, Ok(s) if s != RunState::Missing) {
                self.remember(engine_id, i);
                return Some(e.clone());
            }
        }
        None
    }
}

#[async_trait]
impl Engine for Router {
    fn name(&self) -> &'static str {
        self.engines[self.default].name()
    }

    fn capabilities(&self) -> Capabilities {
        self.engines[self.default].capabilities()
    }

    fn engines(&self) -> Vec<(&'static str, Capabilities)> {
        self.engines
            .iter()
            .map(|e| (e.name(), e.capabilities()))
            .collect()
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        let i = self.index_for_spec(spec)?;
        let r = self.engines[i].create(spec).await;
        if let Ok(c) = &r {
            self.remember(&c.engine_id, i);
        }
        r
    }

    async fn destroy(&self, engine_id: &str) -> Result<(), EngineError> {
        let known = self.owners().remove(engine_id);
        match known {
            Some(i) => self.engines[i].destroy(engine_id).await,
            None => {
                // Unknown here: whichever engine holds leftovers of it removes them.
                let mut first_err = None;
                for e in &self.engines {
                    if let Err(err) = e.destroy(engine_id).await {
                        first_err.get_or_insert(err);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
        }
    }

    async fn state(&self, engine_id: &str) -> Result<RunState, EngineError> {
        match self.owner(engine_id).await {
            Some(e) => e.state(engine_id).await,
            None => Ok(RunState::Missing),
        }
    }

    async fn pause(&self, engine_id: &str) -> Result<(), EngineError> {
        let e = self
            .owner(engine_id)
            .await
            .ok_or_else(|| not_found(engine_id))?;
        e.pause(engine_id).await
    }

    async fn resume(&self, engine_id: &str) -> Result<(), EngineError> {
        let e = self
            .owner(engine_id)
            .await
            .ok_or_else(|| not_found(engine_id))?;
        e.resume(engine_id).await
    }

    async fn snapshot(&self, engine_id: &str) -> Result<(), EngineError> {
        let e = self
            .owner(engine_id)
            .await
            .ok_or_else(|| not_found(engine_id))?;
        e.snapshot(engine_id).await
    }

    async fn agent(&self, engine_id: &str) -> Result<AgentEndpoint, EngineError> {
        let e = self
            .owner(engine_id)
            .await
            .ok_or_else(|| not_found(engine_id))?;
        e.agent(engine_id).await
    }

    async fn stop(&self, engine_id: &str) -> Result<(), EngineError> {
        let e = self
            .owner(engine_id)
            .await
            .ok_or_else(|| not_found(engine_id))?;
        e.stop(engine_id).await
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        let i = self.index_for_spec(spec)?;
        let r = self.engines[i].start(spec).await;
        if let Ok(c) = &r {
            self.remember(&c.engine_id, i);
        }
        r
    }

    async fn usage(&self, engine_id: &str) -> Option<u64> {
        self.owner(engine_id).await?.usage(engine_id).await
    }

    async fn recover(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        let mut out = Vec::with_capacity(sandboxes.len());
        let mut parts: Vec<Vec<SandboxSpec>> = vec![Vec::new(); self.engines.len()];
        for s in sandboxes {
            match self.index_for_spec(&s) {
                Ok(i) => parts[i].push(s),
                Err(e) => out.push((s.id, Err(e))),
            }
        }
        // Every engine recovers, even with nothing listed: that is when it sweeps leftovers.
        // The default engine goes last: it owns the shared network and its reconcile spares
        // what the others reserved before it.
        let mut order: Vec<(usize, Vec<SandboxSpec>)> = parts.into_iter().enumerate().collect();
        let d = order.remove(self.default);
        order.push(d);
        for (i, part) in order {
            for (id, r) in self.engines[i].recover(part).await {
                if r.is_ok() {
                    self.remember(&id, i);
                }
                out.push((id, r));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that only records which ids it was asked about.
    struct Fake {
        name: &'static str,
        known: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(name: &'static str) -> Arc<Fake> {
            Arc::new(Fake {
                name,
                known: Mutex::new(Vec::new()),
            })
        }
        fn knows(&self, id: &str) -> bool {
            self.known.lock().unwrap().iter().any(|k| k == id)
        }
    }

    #[async_trait]
    impl Engine for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                pause: true,
                snapshot_memory: self.name == "b",
            }
        }
        async fn create(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
            self.known.lock().unwrap().push(spec.id.clone());
            Ok(Created {
                engine_id: spec.id.clone(),
                ip: None,
                meta: serde_json::json!({ "engine": self.name }),
            })
        }
        async fn destroy(&self, engine_id: &str) -> Result<(), EngineError> {
            self.known.lock().unwrap().retain(|k| k != engine_id);
            Ok(())
        }
        async fn state(&self, engine_id: &str) -> Result<RunState, EngineError> {
            Ok(if self.knows(engine_id) {
                RunState::Running
            } else {
                RunState::Missing
            })
        }
        async fn pause(&self, engine_id: &str) -> Result<(), EngineError> {
            if self.knows(engine_id) {
                Ok(())
            } else {
                Err(not_found(engine_id))
            }
        }
        async fn resume(&self, engine_id: &str) -> Result<(), EngineError> {
            self.pause(engine_id).await
        }
        async fn agent(&self, engine_id: &str) -> Result<AgentEndpoint, EngineError> {
            Err(not_found(engine_id))
        }
    }

    fn spec(id: &str, engine: &str) -> SandboxSpec {
        SandboxSpec {
            id: id.into(),
            name: id.into(),
            user_id: "usr_x".into(),
            subnet_index: 1,
            image: "tiny".into(),
            cpus: 1.0,
            memory_mb: 256,
            env: Default::default(),
            files: Vec::new(),
            init: None,
            agent_token: "t".into(),
            engine: engine.into(),
        }
    }

    #[tokio::test]
    async fn routes_by_spec_and_then_by_id() {
        let (a, b) = (Fake::new("a"), Fake::new("b"));
        let r = Router::new(vec![a.clone(), b.clone()], "a").unwrap();
        assert_eq!(r.name(), "a");
        assert_eq!(
            r.engines().iter().map(|e| e.0).collect::<Vec<_>>(),
            ["a", "b"]
        );
        r.create(&spec("1111", "")).await.unwrap();
        r.create(&spec("2222", "b")).await.unwrap();
        assert!(a.knows("1111") && !b.knows("1111"));
        assert!(b.knows("2222") && !a.knows("2222"));
        r.pause("2222").await.unwrap();
        assert_eq!(r.state("2222").await.unwrap(), RunState::Running);
        assert_eq!(r.state("9999").await.unwrap(), RunState::Missing);
        assert!(matches!(
            r.pause("9999").await,
            Err(EngineError::NotFound(_))
        ));
        r.destroy("2222").await.unwrap();
        assert!(!b.knows("2222"));
    }

    #[tokio::test]
    async fn unknown_ids_are_found_by_asking() {
        let (a, b) = (Fake::new("a"), Fake::new("b"));
        b.known.lock().unwrap().push("3333".into());
        let r = Router::new(vec![a.clone(), b.clone()], "a").unwrap();
        r.resume("3333").await.unwrap();
        // Destroy of an id never seen asks every engine.
        b.known.lock().unwrap().push("4444".into());
        r.destroy("4444").await.unwrap();
        assert!(!b.knows("4444"));
    }

    #[tokio::test]
    async fn disabled_engine_and_bad_default_are_errors() {
        let r = Router::new(vec![Fake::new("a")], "a").unwrap();
        let e = r.create(&spec("5555", "gvisor")).await.unwrap_err();
        assert!(e.to_string().contains("not enabled"), "{e}");
        assert!(Router::new(vec![Fake::new("a")], "b").is_err());
        assert!(Router::new(vec![Fake::new("a"), Fake::new("a")], "a").is_err());
    }

    #[tokio::test]
    async fn recover_partitions_by_engine() {
        let (a, b) = (Fake::new("a"), Fake::new("b"));
        let r = Router::new(vec![a.clone(), b.clone()], "a").unwrap();
        let out = r
            .recover(vec![
                spec("6666", "a"),
                spec("7777", "b"),
                spec("8888", "zz"),
            ])
            .await;
        assert_eq!(out.len(), 3);
        // The fakes do not implement recovery: each got only its own sandbox.
        let err_of = |id: &str| {
            out.iter()
                .find(|(i, _)| i == id)
                .unwrap()
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
        };
        assert!(err_of("6666").contains("a engine"), "{}", err_of("6666"));
        assert!(err_of("7777").contains("b engine"), "{}", err_of("7777"));
        assert!(err_of("8888").contains("not enabled"));
    }
}
