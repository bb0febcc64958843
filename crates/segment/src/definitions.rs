//! The streaming definitions of each sandbox, compiled once per version: the catalog says
//! what exists, this cache keeps the plans. A definition that no longer compiles (it was
//! checked when created, so this means a newer language rule) is skipped with a warning.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use cdp_catalog::{CatalogView, SegmentDefinition};
use cdp_pql::Plan;

pub struct Compiled {
    pub id: String,
    /// Evaluated after the others: it reads their memberships.
    pub uses_segments: bool,
    /// Evaluated on every update (and owns a timer), or only by a schedule.
    pub streaming: bool,
    pub plan: Plan,
}

#[derive(Default)]
pub struct Definitions {
    /// By id: the version (update time) the plan was compiled from.
    plans: HashMap<String, (i64, Arc<Compiled>)>,
}

impl Definitions {
    /// The streaming definitions of a sandbox, the ones reading other segments last. Called on
    /// every profile update: definitions are only read, plans compiled once per version.
    pub fn streaming(
        &mut self,
        catalog: &CatalogView,
        org: &str,
        sandbox: &str,
    ) -> Vec<Arc<Compiled>> {
        self.select(catalog, |d| {
            d.streaming && d.org_id == org && d.sandbox == sandbox
        })
    }

    /// The batch definitions of a sandbox a schedule evaluates: `selected` ids, or all for
    /// `["*"]`.
    pub fn batch(
        &mut self,
        catalog: &CatalogView,
        org: &str,
        sandbox: &str,
        selected: &[String],
    ) -> Vec<Arc<Compiled>> {
        let all = selected.iter().any(|s| s == "*");
        self.select(catalog, |d| {
            !d.streaming
                && d.org_id == org
                && d.sandbox == sandbox
                && (all || selected.contains(&d.id))
        })
    }

    fn select(
        &mut self,
        catalog: &CatalogView,
        keep: impl Fn(&SegmentDefinition) -> bool,
    ) -> Vec<Arc<Compiled>> {
        let state = catalog.read();
        let mut out: Vec<Arc<Compiled>> = state
            .segments
            .values()
            .filter(|d| keep(d))
            .filter_map(|d| self.plan(d))
            .collect();
        out.sort_by(|a, b| (a.uses_segments, &a.id).cmp(&(b.uses_segments, &b.id)));
        out
    }

    /// Changes whenever a streaming definition is created, changed or deleted.
    pub fn fingerprint(&self, catalog: &CatalogView) -> u64 {
        let mut versions: Vec<(String, i64)> = catalog
            .read()
            .segments
            .values()
            .filter(|d| d.streaming)
            .map(|d| (d.id.clone(), d.update_time))
            .collect();
        versions.sort();
        let mut h = std::hash::DefaultHasher::new();
        versions.hash(&mut h);
        h.finish()
    }

    fn plan(&mut self, d: &SegmentDefinition) -> Option<Arc<Compiled>> {
        if let Some((version, plan)) = self.plans.get(&d.id) {
            if *version == d.update_time && plan.streaming == d.streaming {
                return Some(plan.clone());
            }
        }
        let compiled = cdp_pql::parse(&d.expression).and_then(|q| Plan::compile(&q));
        match compiled {
            Ok(plan) => {
                let c = Arc::new(Compiled {
                    id: d.id.clone(),
                    uses_segments: d.expression.contains("inSegment"),
                    streaming: d.streaming,
                    plan,
                });
                self.plans.insert(d.id.clone(), (d.update_time, c.clone()));
                Some(c)
            }
            Err(e) => {
                tracing::warn!(segment = %d.id, error = %e.render(&d.expression), "segment definition does not compile; skipped");
                None
            }
        }
    }
}
