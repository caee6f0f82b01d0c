//! Semantic checks that the type system cannot express.

use crate::Problem;
use crate::model::*;
use ck8s_domain::duration::parse_duration;
use std::collections::{BTreeMap, BTreeSet};

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), message: message.into() });
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_role_key(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_ttl(p: &mut Problems, path: String, value: &str) {
    match parse_duration(value) {
        Some(d) if !d.is_zero() => {}
        _ => p.add(path, format!("invalid duration {value:?}: expected e.g. 30m or 24h, greater than zero")),
    }
}

fn check_doc_path(p: &mut Problems, path: String, value: &str) {
    if value.trim().is_empty() {
        p.add(path, "path must not be empty");
    } else if value.starts_with('/') || value.split('/').any(|s| s == "..") {
        p.add(path, format!("path {value:?} must be relative and must not contain '..'"));
    }
}

/// Every problem of the document; empty when it is valid.
pub fn validate(s: &ServiceStack) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    if s.api_version != API_VERSION {
        p.add("apiVersion", format!("must be {API_VERSION:?}, got {:?}", s.api_version));
    }
    if s.kind != KIND {
        p.add("kind", format!("must be {KIND:?}, got {:?}", s.kind));
    }
    if !is_dns_label(&s.metadata.name) {
        p.add("metadata.name", "must be a DNS label (lowercase letters, digits, '-')");
    }
    if let Some(project) = &s.spec.project
        && !is_dns_label(project)
    {
        p.add("spec.project", "must be a DNS label (lowercase letters, digits, '-')");
    }

    environments(&mut p, s);
    runtime(&mut p, s);

    for (name, v) in &s.spec.versions {
        if v.value.trim().is_empty() {
            p.add(format!("spec.versions.{name}.value"), "must not be empty");
        }
    }
    for (name, img) in &s.spec.images {
        let path = format!("spec.images.{name}");
        match img.kind {
            ImageKind::Build if img.repository.as_deref().is_none_or(str::is_empty) => {
                p.add(format!("{path}.repository"), "is required for type: build")
            }
            ImageKind::External if img.from.as_deref().is_none_or(str::is_empty) => {
                p.add(format!("{path}.from"), "is required for type: external")
            }
            _ => {}
        }
    }
    for (i, d) in s.spec.project_docs.iter().enumerate() {
        check_doc_path(&mut p, format!("spec.projectDocs[{i}].path"), &d.path);
    }
    for (role, docs) in &s.spec.role_doc_templates {
        if !is_role_key(role) {
            p.add(format!("spec.roleDocTemplates.{role}"), "role keys must match [a-z0-9][a-z0-9._-]*");
        }
        for (i, d) in docs.iter().enumerate() {
            check_doc_path(&mut p, format!("spec.roleDocTemplates.{role}[{i}].path"), &d.path);
        }
    }
    units(&mut p, s);
    p.0
}

fn environments(p: &mut Problems, s: &ServiceStack) {
    let envs = &s.spec.environments;
    if envs.is_empty() {
        p.add("spec.environments", "at least one environment is required");
    }
    for (name, env) in envs {
        if !is_dns_label(name) {
            p.add(format!("spec.environments.{name}"), "environment names must be DNS labels");
        }
        if let Some(from) = &env.from
            && !envs.contains_key(from)
        {
            p.add(format!("spec.environments.{name}.from"), format!("unknown environment {from:?}"));
        }
        // Inheritance must end.
        let mut seen = vec![name.as_str()];
        let mut cur = env.from.as_deref();
        while let Some(next) = cur {
            if seen.contains(&next) {
                seen.push(next);
                p.add(format!("spec.environments.{name}.from"), format!("inheritance cycle: {}", seen.join(" -> ")));
                break;
            }
            seen.push(next);
            cur = envs.get(next).and_then(|e| e.from.as_deref());
        }
    }
    if s.project() == "codex-k8s" {
        let prod = envs.get("production").and_then(|e| e.namespace_template.as_deref());
        if prod != Some("{{ .Project }}-prod") {
            p.add(
                "spec.environments.production.namespaceTemplate",
                "the platform's production namespace template must be \"{{ .Project }}-prod\"",
            );
        }
    }
}

fn runtime(p: &mut Problems, s: &ServiceStack) {
    let Some(w) = &s.spec.webhook_runtime else { return };
    for kind in w.trigger_modes.keys() {
        if !ck8s_domain::stage::is_trigger_kind(kind) {
            p.add(
                format!("spec.webhookRuntime.triggerModes.{kind}"),
                "unknown trigger kind (expected e.g. dev, dev_revise, intake, rethink, ai_repair)",
            );
        }
    }
    if let Some(ttl) = &w.default_namespace_ttl {
        check_ttl(p, "spec.webhookRuntime.defaultNamespaceTTL".into(), ttl);
    }
    for (role, ttl) in &w.namespace_ttl_by_role {
        if !is_role_key(role) {
            p.add(format!("spec.webhookRuntime.namespaceTTLByRole.{role}"), "role keys must match [a-z0-9][a-z0-9._-]*");
        }
        check_ttl(p, format!("spec.webhookRuntime.namespaceTTLByRole.{role}"), ttl);
    }
    if let Some(o) = &s.spec.orchestration
        && let Some(ttl) = o.cleanup_policy.as_ref().and_then(|c| c.full_env_idle_ttl.as_ref())
    {
        check_ttl(p, "spec.orchestration.cleanupPolicy.fullEnvIdleTTL".into(), ttl);
    }
}

fn units(p: &mut Problems, s: &ServiceStack) {
    // name -> "infrastructure" | "service"
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let named =
        s.spec.infrastructure.iter().enumerate().map(|(i, u)| (format!("spec.infrastructure[{i}]"), u.name.as_str(), "infrastructure"));
    let named = named.chain(s.spec.services.iter().enumerate().map(|(i, u)| (format!("spec.services[{i}]"), u.name.as_str(), "service")));
    for (path, name, kind) in named {
        if !is_dns_label(name) {
            p.add(format!("{path}.name"), format!("{name:?} is not a DNS label"));
        }
        if kinds.insert(name, kind).is_some() {
            p.add(format!("{path}.name"), format!("duplicate unit name {name:?}"));
        }
    }
    let components: BTreeSet<&str> = s.spec.components.iter().map(|c| c.name.as_str()).collect();
    if components.len() != s.spec.components.len() {
        p.add("spec.components", "component names must be unique");
    }

    for (i, u) in s.spec.infrastructure.iter().enumerate() {
        for d in &u.depends_on {
            match kinds.get(d.as_str()) {
                None => p.add(format!("spec.infrastructure[{i}].dependsOn"), format!("unknown unit {d:?}")),
                Some(&"service") => p.add(
                    format!("spec.infrastructure[{i}].dependsOn"),
                    format!("infrastructure cannot depend on service {d:?} (infrastructure is applied first)"),
                ),
                _ => {}
            }
        }
        check_units_common(p, format!("spec.infrastructure[{i}]"), &u.manifests, u.when.as_deref());
    }
    for (i, svc) in s.spec.services.iter().enumerate() {
        let path = format!("spec.services[{i}]");
        for u in &svc.uses {
            if !components.contains(u.as_str()) {
                p.add(format!("{path}.use"), format!("unknown component {u:?}"));
            }
        }
        for d in s.service_depends_on(svc) {
            if !kinds.contains_key(d.as_str()) {
                p.add(format!("{path}.dependsOn"), format!("unknown unit {d:?}"));
            }
        }
        check_units_common(p, path, &svc.manifests, svc.when.as_deref());
    }
    if let Some(o) = &s.spec.orchestration {
        let mut seen = BTreeSet::new();
        for g in &o.deploy_order {
            if !seen.insert(g) {
                p.add("spec.orchestration.deployOrder", format!("group {g:?} is listed twice"));
            }
        }
    }
    if let Some(cycle) = find_cycle(s) {
        p.add("spec", format!("dependency cycle: {}", cycle.join(" -> ")));
    }
}

fn check_units_common(p: &mut Problems, path: String, manifests: &[Manifest], when: Option<&str>) {
    for (j, m) in manifests.iter().enumerate() {
        check_doc_path(p, format!("{path}.manifests[{j}].path"), &m.path);
    }
    if when.is_some_and(|w| w.trim().is_empty()) {
        p.add(format!("{path}.when"), "must not be empty (omit it to always apply)");
    }
}

/// A dependency cycle over all units, as the list of names around it, if any.
pub(crate) fn find_cycle(s: &ServiceStack) -> Option<Vec<String>> {
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in &s.spec.infrastructure {
        graph.insert(u.name.clone(), u.depends_on.clone());
    }
    for svc in &s.spec.services {
        graph.insert(svc.name.clone(), s.service_depends_on(svc));
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        n: &str,
        g: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|x| x == n).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_string(), Mark::Visiting);
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if g.contains_key(d)
                && let Some(c) = visit(d, g, marks, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, &graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}
