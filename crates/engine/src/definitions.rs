//! Each sandbox's segment definitions as the engine uses them, compiled once per version and
//! rebuilt only when the catalog changed: the streaming ones as an incremental
//! [`DefinitionSet`], which event fields its profiles keep ([`Projection`]), and what a sweep
//! compares to know which definitions are new, changed or gone. A definition that no longer
//! compiles (it was checked when created, so this means a newer language rule) is left out
//! with a warning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cdp_catalog::{CatalogState, CatalogView, SegmentDefinition};
use cdp_pql::incremental::{Definition, DefinitionSet};
use cdp_pql::Plan;

use crate::activation::Activation;
use crate::projection::Projection;

/// One sandbox's definitions.
#[derive(Debug)]
pub struct Sandbox {
    /// The streaming definitions, evaluated on every change of a profile.
    pub streaming: DefinitionSet,
    /// The event fields its profiles keep.
    pub projection: Projection,
    /// Streaming definition id → its version (update time): what its profiles must have been
    /// evaluated with.
    pub versions: BTreeMap<String, i64>,
    /// Every definition id of the sandbox, streaming or batch.
    pub all: BTreeSet<String>,
    /// The sandbox's enabled destination flows that map a segment.
    pub flows: Vec<Activation>,
    /// [`fingerprint`] of `versions`, computed once: every update compares it (hashing 100
    /// definitions' ids on each was 6 % of the engine's loop).
    fingerprint: u64,
}

impl Sandbox {
    pub fn new(
        streaming: DefinitionSet,
        projection: Projection,
        versions: BTreeMap<String, i64>,
        all: BTreeSet<String>,
        flows: Vec<Activation>,
    ) -> Self {
        Self {
            streaming,
            projection,
            fingerprint: fingerprint(&versions),
            versions,
            all,
            flows,
        }
    }

    /// A stable fingerprint of [`Self::versions`].
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

pub fn fingerprint(versions: &BTreeMap<String, i64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    versions.hash(&mut h);
    h.finish()
}

#[derive(Default)]
pub struct Definitions {
    /// The operator's keep-list of event fields.
    keep: Vec<String>,
    /// The catalog version the cached sandboxes were built from.
    version: i64,
    sandboxes: HashMap<(String, String), Arc<Sandbox>>,
    /// Definition id → (version, streaming, plan).
    plans: HashMap<String, (i64, Arc<Plan>)>,
}

impl Definitions {
    pub fn new(keep: Vec<String>) -> Self {
        Self {
            keep,
            version: -1,
            ..Self::default()
        }
    }

    /// The sandbox's definitions, rebuilt when the catalog changed since they were.
    pub fn sandbox(&mut self, catalog: &CatalogView, org: &str, sandbox: &str) -> Arc<Sandbox> {
        let state = catalog.read();
        if state.version() != self.version {
            self.version = state.version();
            self.sandboxes.clear();
        }
        let key = (org.to_string(), sandbox.to_string());
        if let Some(s) = self.sandboxes.get(&key) {
            return s.clone();
        }
        let built = Arc::new(self.build(&state, org, sandbox));
        self.sandboxes.insert(key, built.clone());
        built
    }

    /// The batch definitions of a sandbox a schedule evaluates: `selected` ids, or all for
    /// `["*"]`.
    pub fn batch(
        &mut self,
        catalog: &CatalogView,
        org: &str,
        sandbox: &str,
        selected: &[String],
    ) -> DefinitionSet {
        let state = catalog.read();
        let all = selected.iter().any(|s| s == "*");
        let defs: Vec<Definition> = of_sandbox(&state, org, sandbox)
            .filter(|d| !d.streaming && (all || selected.contains(&d.id)))
            .filter_map(|d| self.definition(d))
            .collect();
        DefinitionSet::new(defs, false)
    }

    /// The sandboxes that have definitions.
    pub fn sandboxes_with_definitions(catalog: &CatalogView) -> BTreeSet<(String, String)> {
        catalog
            .read()
            .segments
            .values()
            .map(|d| (d.org_id.clone(), d.sandbox.clone()))
            .collect()
    }

    fn build(&mut self, state: &CatalogState, org: &str, sandbox: &str) -> Sandbox {
        let mut streaming = Vec::new();
        let mut versions = BTreeMap::new();
        let mut all = BTreeSet::new();
        let mut paths: BTreeSet<Vec<String>> = BTreeSet::new();
        for d in of_sandbox(state, org, sandbox) {
            all.insert(d.id.clone());
            let Some(def) = self.definition(d) else {
                continue;
            };
            paths.extend(def.plan.inputs().event_paths.iter().cloned());
            if d.streaming {
                versions.insert(d.id.clone(), d.update_time);
                streaming.push(def);
            }
        }
        Sandbox::new(
            DefinitionSet::new(streaming, true),
            Projection::new(paths, &self.keep),
            versions,
            all,
            crate::activation::activations_in(state, org, sandbox),
        )
    }

    fn definition(&mut self, d: &SegmentDefinition) -> Option<Definition> {
        if let Some((version, plan)) = self.plans.get(&d.id) {
            if *version == d.update_time {
                return Some(Definition {
                    id: d.id.clone(),
                    plan: plan.clone(),
                });
            }
        }
        match cdp_pql::parse(&d.expression).and_then(|q| Plan::compile(&q)) {
            Ok(plan) => {
                let plan = Arc::new(plan);
                self.plans
                    .insert(d.id.clone(), (d.update_time, plan.clone()));
                Some(Definition {
                    id: d.id.clone(),
                    plan,
                })
            }
            Err(e) => {
                tracing::warn!(segment = %d.id, error = %e.render(&d.expression), "segment definition does not compile; skipped");
                None
            }
        }
    }
}

fn of_sandbox<'s>(
    state: &'s CatalogState,
    org: &'s str,
    sandbox: &'s str,
) -> impl Iterator<Item = &'s SegmentDefinition> + 's {
    state
        .segments
        .values()
        .filter(move |d| d.org_id == org && d.sandbox == sandbox)
}
