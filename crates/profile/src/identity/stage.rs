//! The identity stage: the owner of the identity graphs. It reads `profile.sequence`, which is
//! partitioned by sandbox ([`cdp_contract::partition::for_sandbox`]): a graph never spans two
//! sandboxes, so each partition's graphs are complete on their own and its owner links without
//! asking anyone (the instances of the group share the partitions). For each item it applies
//! the identities to the graph ([`super::graph::observe`]) and writes, in the same transaction
//! as the graph's changelog:
//!
//! - to `profile.resolved`, keyed by profile id: merges and splits for the profiles whose
//!   content must move, new memberships, and the item with the profile its owner identity
//!   belongs to — so a profile's state lives in one partition of the profile stage;
//! - to `identity.graph`: what changed, for the identity API.
//!
//! Items the profile stage hands back after a merge or split link nothing: they are placed by
//! their owner identity only.
//!
//! State (in the sandbox's partition): `n` + org, sandbox, namespace, value → profile id;
//! `c` + profile id → the cluster; the graph's history ([`super::history`]). The identity API
//! reads it there ([`super::query`]).

use cdp_contract::records::{GraphChange, GraphRecord, Identity, Item, Resolved};
use cdp_stage::{Cause, Context, Output, ProcessError, Processor};
use rdkafka::message::{Message, OwnedMessage};

use super::graph::{observe, owner, Cluster, Observation};
use crate::json;

pub struct IdentityStage {
    pub resolved_topic: String,
    /// Partitions of `profile.resolved`: a profile's records go to
    /// `cdp_contract::partition::for_key(profile id)`, where control looks for it too.
    pub resolved_partitions: i32,
    /// Partitions of `profile.sequence`, this stage's input: a record on another partition
    /// than its sandbox's would link against the wrong graph.
    pub sequence_partitions: i32,
    pub graph_topic: String,
    /// Reads events again when definitions come to read fields profiles did not keep.
    pub backfill: Option<super::backfill::Backfill>,
}

pub(crate) fn node_key(org: &str, sandbox: &str, identity: &Identity) -> Vec<u8> {
    let mut k =
        Vec::with_capacity(4 + org.len() + sandbox.len() + identity.ns.len() + identity.id.len());
    k.push(b'n');
    for part in [org, sandbox, &identity.ns] {
        k.extend_from_slice(part.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(identity.id.as_bytes());
    k
}

pub(crate) fn cluster_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(b'c');
    k.extend_from_slice(id.as_bytes());
    k
}

impl IdentityStage {
    fn cluster_of(
        ctx: &Context<'_>,
        partition: i32,
        org: &str,
        sandbox: &str,
        identity: &Identity,
    ) -> Result<Option<String>, ProcessError> {
        Ok(ctx
            .get(partition, &node_key(org, sandbox, identity))?
            .and_then(|v| String::from_utf8(v).ok()))
    }

    fn load(ctx: &Context<'_>, partition: i32, id: &str) -> Result<Option<Cluster>, ProcessError> {
        match ctx.get(partition, &cluster_key(id))? {
            Some(v) => json::from_slice(&v, "a stored cluster").map(Some),
            None => Ok(None),
        }
    }

    fn emit_resolved(
        &self,
        ctx: &mut Context<'_>,
        cause: Cause,
        r: &Resolved,
    ) -> Result<(), ProcessError> {
        let value = json::to_vec(r, "a resolved record")?;
        let key = r.profile_id().as_bytes().to_vec();
        let mut output = Output::new(&self.resolved_topic, key, value);
        output.partition = Some(cdp_contract::partition::for_key(
            r.profile_id().as_bytes(),
            self.resolved_partitions,
        ));
        ctx.emit(cause, output);
        Ok(())
    }

    fn emit_graph(
        &self,
        ctx: &mut Context<'_>,
        cause: Cause,
        key: &str,
        r: &GraphRecord,
    ) -> Result<(), ProcessError> {
        let value = json::to_vec(r, "a graph record")?;
        ctx.emit(
            cause,
            json::to_partition_zero(&self.graph_topic, Some(key.as_bytes().to_vec()), value),
        );
        Ok(())
    }

    /// Places one item, read from `partition`: links its identities (unless it is handed back)
    /// and routes it.
    fn place(
        &self,
        ctx: &mut Context<'_>,
        cause: Cause,
        partition: i32,
        seq: u64,
        mut item: Item,
    ) -> Result<(), ProcessError> {
        let (org, sandbox) = (item.org_id.clone(), item.sandbox.clone());
        let home = cdp_contract::partition::for_sandbox(&org, &sandbox, self.sequence_partitions);
        if home != partition {
            // Only a writer that counts profile.sequence's partitions differently puts it here
            // (the topic's partitions changed under running stages): linking it against this
            // partition's graphs would split the sandbox's profiles.
            return Err(ProcessError::Fatal(format!(
                "item {} of sandbox {org}/{sandbox} is on profile.sequence partition {partition}, \
                 but its sandbox's graph is on partition {home} of {}: profile.sequence's \
                 partition count must not change once profiles exist",
                item.item_id, self.sequence_partitions
            )));
        }
        if let Some(transfer) = &item.transfer {
            let placed = match &item.owner {
                Some(o) => Self::cluster_of(ctx, partition, &org, &sandbox, o)?,
                None => None,
            };
            let target = placed.unwrap_or_else(|| transfer.hint.clone());
            metrics::counter!("cdp_identity_items_placed_again_total").increment(1);
            return self.emit_resolved(
                ctx,
                cause,
                &Resolved::Item {
                    profile_id: target,
                    seq,
                    identities: None,
                    item: Box::new(item),
                },
            );
        }
        let Some(owner_identity) = owner(&item.identities).cloned() else {
            // The intake refuses items without identities; one here is a defect upstream.
            return Err(ProcessError::Fatal(format!(
                "item {} of dataset {} has no identity",
                item.item_id, item.dataset_id
            )));
        };
        item.owner = Some(owner_identity.clone());
        if let Some(b) = &self.backfill {
            b.note(ctx, cause, partition, &org, &sandbox)?;
        }
        if item.refresh {
            // Read again to fill in fields: it goes where its owner is now, and links nothing.
            let Some(target) = Self::cluster_of(ctx, partition, &org, &sandbox, &owner_identity)?
            else {
                metrics::counter!("cdp_identity_refresh_unplaced_total").increment(1);
                return Ok(());
            };
            metrics::counter!("cdp_identity_refreshes_placed_total").increment(1);
            return self.emit_resolved(
                ctx,
                cause,
                &Resolved::Item {
                    profile_id: target,
                    seq,
                    identities: None,
                    item: Box::new(item),
                },
            );
        }
        let time_ms = cdp_contract::clock::now_ms();
        if !item.refused.is_empty() {
            let refused = GraphRecord::Refused {
                org_id: org.clone(),
                sandbox: sandbox.clone(),
                seq,
                time_ms,
                dataset_id: item.dataset_id.clone(),
                item_id: item.item_id.clone(),
                refused: item.refused.clone(),
            };
            self.emit_graph(ctx, cause, &owner_identity.to_string(), &refused)?;
        }
        let mut known: Vec<String> = Vec::new();
        let mut unknown = false;
        for (identity, _) in &item.identities {
            match Self::cluster_of(ctx, partition, &org, &sandbox, identity)? {
                Some(id) if !known.contains(&id) => known.push(id),
                Some(_) => {}
                None => unknown = true,
            }
        }
        // The common case: one known identity. Nothing to link.
        if item.identities.len() == 1 && !unknown {
            return self.emit_resolved(
                ctx,
                cause,
                &Resolved::Item {
                    profile_id: known.swap_remove(0),
                    seq,
                    identities: None,
                    item: Box::new(item),
                },
            );
        }
        let mut old = Vec::with_capacity(known.len());
        for id in &known {
            match Self::load(ctx, partition, id)? {
                Some(c) => old.push(c),
                None => {
                    return Err(ProcessError::Fatal(format!(
                        "identity index names profile {id}, which the graph does not hold"
                    )))
                }
            }
        }
        let before: Vec<(String, Vec<Identity>)> =
            old.iter().map(|c| (c.id.clone(), c.identities())).collect();
        let step = {
            let obs = Observation {
                org_id: &org,
                sandbox: &sandbox,
                seq,
                time_ms,
                identities: &item.identities,
            };
            // A store that cannot answer counts the id as taken: a salted id is still unique.
            observe(old, &obs, |id| {
                ctx.get(partition, &cluster_key(id))
                    .map_or(true, |v| v.is_some())
            })
        };

        // State: retired clusters and evicted identities go, the touched clusters are written
        // and their identities point at them.
        for (retired, _) in &step.retired {
            ctx.delete(cause, &cluster_key(retired));
        }
        for identity in &step.evicted {
            ctx.delete(cause, &node_key(&org, &sandbox, identity));
            metrics::counter!("cdp_identity_evicted_total").increment(1);
        }
        for cluster in &step.clusters {
            let value = json::to_vec(cluster, "a cluster")?;
            ctx.put(cause, &cluster_key(&cluster.id), value);
            for node in &cluster.nodes {
                let was = before
                    .iter()
                    .find(|(_, ids)| ids.contains(&node.identity))
                    .map(|(id, _)| id.as_str());
                if was != Some(cluster.id.as_str()) {
                    ctx.put(
                        cause,
                        &node_key(&org, &sandbox, &node.identity),
                        cluster.id.clone().into_bytes(),
                    );
                }
            }
        }

        // The graph's history, then the profiles' moves, then the item.
        super::history::record(ctx, cause, partition, &org, &sandbox, seq, &step.history)?;
        for change in &step.history {
            metrics::counter!("cdp_identity_graph_changes_total", "op" => op(&change.change))
                .increment(1);
            self.emit_graph(
                ctx,
                cause,
                &change.profile_id,
                &GraphRecord::Change(change.clone()),
            )?;
        }
        let members = |c: &Cluster| GraphRecord::Members {
            profile_id: c.id.clone(),
            org_id: org.clone(),
            sandbox: sandbox.clone(),
            seq,
            time_ms,
            identities: c.identities(),
        };
        for (retired, into) in &step.retired {
            let gone = GraphRecord::Members {
                profile_id: retired.clone(),
                org_id: org.clone(),
                sandbox: sandbox.clone(),
                seq,
                time_ms,
                identities: Vec::new(),
            };
            self.emit_graph(ctx, cause, retired, &gone)?;
            self.emit_resolved(
                ctx,
                cause,
                &Resolved::Merged {
                    profile_id: retired.clone(),
                    seq,
                    org_id: org.clone(),
                    sandbox: sandbox.clone(),
                    into: into.clone(),
                },
            )?;
        }
        let target = step
            .clusters
            .iter()
            .find(|c| c.nodes.iter().any(|n| n.identity == owner_identity))
            .map(|c| c.id.clone())
            .ok_or_else(|| {
                ProcessError::Fatal(format!(
                    "the owner {owner_identity} of an item is in no cluster after linking"
                ))
            })?;
        for cluster in &step.clusters {
            if !step.changed.contains(&cluster.id) {
                continue;
            }
            self.emit_graph(ctx, cause, &cluster.id, &members(cluster))?;
            if let Some((_, moved)) = step.moved.iter().find(|(id, _)| *id == cluster.id) {
                self.emit_resolved(
                    ctx,
                    cause,
                    &Resolved::Split {
                        profile_id: cluster.id.clone(),
                        seq,
                        org_id: org.clone(),
                        sandbox: sandbox.clone(),
                        moved: moved.clone(),
                        identities: cluster.identities(),
                    },
                )?;
            } else if cluster.id != target {
                self.emit_resolved(
                    ctx,
                    cause,
                    &Resolved::Graph {
                        profile_id: cluster.id.clone(),
                        seq,
                        org_id: org.clone(),
                        sandbox: sandbox.clone(),
                        identities: cluster.identities(),
                    },
                )?;
            }
        }
        let identities = step
            .clusters
            .iter()
            .find(|c| c.id == target && step.changed.contains(&c.id))
            .filter(|c| !step.moved.iter().any(|(id, _)| *id == c.id))
            .map(Cluster::identities);
        self.emit_resolved(
            ctx,
            cause,
            &Resolved::Item {
                profile_id: target,
                seq,
                identities,
                item: Box::new(item),
            },
        )
    }
}

fn op(change: &GraphChange) -> &'static str {
    match change {
        GraphChange::Linked { .. } => "linked",
        GraphChange::Cut { .. } => "cut",
        GraphChange::Evicted { .. } => "evicted",
        GraphChange::Created { .. } => "created",
        GraphChange::Merged { .. } => "merged",
        GraphChange::Split { .. } => "split",
    }
}

impl Processor for IdentityStage {
    async fn sweep(
        &mut self,
        partitions: &[i32],
        ctx: &mut Context<'_>,
    ) -> Result<bool, ProcessError> {
        match &mut self.backfill {
            Some(b) => b.turn(partitions, ctx),
            None => Ok(false),
        }
    }

    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        for (i, m) in batch.iter().enumerate() {
            let item: Item = match serde_json::from_slice(m.payload().unwrap_or_default()) {
                Ok(item) => item,
                Err(e) => {
                    // Only the intake and the profile stage write this topic, so this is a
                    // defect (or a foreign writer); stopping the graph for it would stall every
                    // profile, so it is logged and counted, and the record stays on the topic.
                    tracing::error!(offset = m.offset(), error = %e, "profile.sequence record cannot be read; skipped");
                    metrics::counter!("cdp_identity_unreadable_total").increment(1);
                    continue;
                }
            };
            self.place(ctx, Cause::Input(i), m.partition(), m.offset() as u64, item)?;
        }
        Ok(())
    }
}
