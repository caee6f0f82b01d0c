//! The order in which units are applied: enabled infrastructure first (topologically, ties by
//! name), then the service groups in `orchestration.deployOrder`, then unlisted groups by name.
//! Inside a group a unit goes once its dependencies in the same or earlier groups are applied.

use crate::Problem;
use crate::model::ServiceStack;
use std::collections::{BTreeMap, BTreeSet};

/// One unit to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployStep {
    /// `infrastructure` or the service's deploy group.
    pub group: String,
    /// Unit name.
    pub unit: String,
    /// Manifest template paths, in order.
    pub manifests: Vec<String>,
    /// The unrendered `when:` condition, if any.
    pub when: Option<String>,
}

/// The full ordered plan of a validated stack.
pub fn deploy_plan(s: &ServiceStack) -> Result<Vec<DeployStep>, Problem> {
    let mut steps = Vec::new();
    let mut applied: BTreeSet<String> = BTreeSet::new();

    let infra: BTreeMap<String, (Vec<String>, DeployStep)> = s
        .spec
        .infrastructure
        .iter()
        .map(|u| {
            let step = DeployStep {
                group: "infrastructure".into(),
                unit: u.name.clone(),
                manifests: u.manifests.iter().map(|m| m.path.clone()).collect(),
                when: u.when.clone(),
            };
            (u.name.clone(), (u.depends_on.clone(), step))
        })
        .collect();
    order_group(infra, &mut applied, &mut steps, "infrastructure")?;

    let mut groups: BTreeMap<String, BTreeMap<String, (Vec<String>, DeployStep)>> = BTreeMap::new();
    for svc in &s.spec.services {
        let group = s.deploy_group(svc).unwrap_or_else(|| "default".into());
        let step = DeployStep {
            group: group.clone(),
            unit: svc.name.clone(),
            manifests: svc.manifests.iter().map(|m| m.path.clone()).collect(),
            when: svc.when.clone(),
        };
        groups.entry(group).or_default().insert(svc.name.clone(), (s.service_depends_on(svc), step));
    }
    let listed: Vec<String> = s.spec.orchestration.as_ref().map(|o| o.deploy_order.clone()).unwrap_or_default();
    let mut order: Vec<String> = listed.clone();
    order.extend(groups.keys().filter(|g| !listed.contains(g)).cloned());
    for g in order {
        if let Some(units) = groups.remove(&g) {
            order_group(units, &mut applied, &mut steps, &g)?;
        }
    }
    Ok(steps)
}

fn order_group(
    mut pending: BTreeMap<String, (Vec<String>, DeployStep)>,
    applied: &mut BTreeSet<String>,
    steps: &mut Vec<DeployStep>,
    group: &str,
) -> Result<(), Problem> {
    while !pending.is_empty() {
        let ready = pending.iter().find(|(_, (deps, _))| deps.iter().all(|d| applied.contains(d))).map(|(name, _)| name.clone());
        let Some(name) = ready else {
            let stuck: Vec<String> = pending.keys().cloned().collect();
            return Err(Problem {
                path: format!("spec (group {group})"),
                message: format!(
                    "units {} wait on dependencies that are never applied before them (a cycle or a dependency in a later group)",
                    stuck.join(", ")
                ),
            });
        };
        if let Some((_, step)) = pending.remove(&name) {
            steps.push(step);
        }
        applied.insert(name);
    }
    Ok(())
}
