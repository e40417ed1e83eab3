//! The whole-file checker: turns the raw TOML into a [`Scenario`], reporting every problem at its
//! place in the file. Targets, explicit names and scripted events are checked here, and every
//! target and deployment is run past a scratch scheduling core; one `[[tasks]]` entry is checked
//! in [`super::task`].

use super::raw::{NameList, RawEvent, RawScenario, RawTarget, RawTask};
use super::{
    Action, Deployment, Diagnostic, Scenario, ScriptedEvent, Source, Span, TARGET_CAPACITY_DEFAULT,
};
use cuttle_raft::sched::{Command, Rejection, Scheduler, TargetSpec};
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// Where the fields of one target or deployment are, by the core's field paths (`name`,
/// `steps[1].roles[0]`, ...), so that a rejection by the core points at the right place.
pub(super) struct FieldSpans {
    pub(super) whole: Span,
    pub(super) fields: BTreeMap<String, Span>,
}

impl FieldSpans {
    pub(super) fn new(whole: Span) -> FieldSpans {
        FieldSpans {
            whole,
            fields: BTreeMap::new(),
        }
    }

    pub(super) fn add(&mut self, field: impl Into<String>, span: Span) {
        self.fields.insert(field.into(), span);
    }

    pub(super) fn add_list(&mut self, field: &str, list: &NameList) {
        for (i, name) in list.0.iter().enumerate() {
            self.add(format!("{field}[{i}]"), name.span());
        }
        if let Some(first) = list.0.first() {
            self.fields.entry(field.to_string()).or_insert(first.span());
        }
    }

    /// The span of a field, or of the nearest enclosing field that has one.
    fn find(&self, field: &str) -> Span {
        let mut path = field;
        loop {
            if let Some(span) = self.fields.get(path) {
                return span.clone();
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.whole.clone(),
            }
        }
    }
}

/// A `[[tasks]]` entry after reading: the deployments it makes, and where things are.
pub(super) struct Entry {
    /// Indices into the deployments.
    pub(super) deployments: Vec<usize>,
    /// Field spans per deployment, same order.
    pub(super) spans: Vec<FieldSpans>,
}

pub(super) struct Checker<'a> {
    pub(super) source: Source<'a>,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, span: Span, message: impl Into<String>) {
        let diagnostic = self.source.diagnostic(span, message);
        self.diagnostics.push(diagnostic);
    }

    pub(super) fn check(&mut self, raw: RawScenario) -> Scenario {
        let targets = self.check_targets(&raw.targets);
        let mut deployments = Vec::new();
        let mut entries = Vec::new();
        for (i, task) in raw.tasks.iter().enumerate() {
            entries.push(self.check_task(i, task, &raw.targets, &mut deployments));
        }
        if raw.tasks.is_empty() {
            self.error(
                0..0,
                "the scenario submits no deployment: add a [[tasks]] entry with its [[tasks.steps]]",
            );
        }
        self.check_names(&raw.tasks, &entries, &deployments);
        self.check_with_core(&raw, &targets, &entries, &deployments);
        let events = raw
            .events
            .iter()
            .filter_map(|e| self.check_event(e, &raw.targets, &deployments))
            .collect();
        Scenario {
            task_cap: raw.task_cap.map(|c| c.0),
            targets,
            deployments,
            events,
        }
    }

    fn check_targets(&mut self, raw: &[Spanned<RawTarget>]) -> Vec<TargetSpec> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut specs = Vec::new();
        for target in raw {
            let t = target.get_ref();
            let name = t.name.get_ref().as_str();
            if let Some(line) = seen.get(name) {
                self.error(
                    t.name.span(),
                    format!("target {name:?} is already defined on line {line}: give every target its own name"),
                );
            } else {
                let line = self.source.diagnostic(t.name.span(), "").line;
                seen.insert(name, line);
            }
            specs.push(TargetSpec {
                name: name.to_string(),
                environments: t.environments.names(),
                roles: t.roles.names(),
                tenants: t.tenants.names(),
                capacity: t
                    .capacity
                    .as_ref()
                    .map_or(TARGET_CAPACITY_DEFAULT, |c| c.get_ref().0),
            });
        }
        specs
    }

    /// Explicit names are unique.
    fn check_names(
        &mut self,
        raw: &[Spanned<RawTask>],
        entries: &[Entry],
        deployments: &[Deployment],
    ) {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (task, entry) in raw.iter().zip(entries) {
            let Some(name) = &task.get_ref().name else {
                continue;
            };
            if entry.deployments.len() != 1 {
                continue;
            }
            let clash = !seen.insert(name.get_ref().as_str())
                || deployments
                    .iter()
                    .enumerate()
                    .any(|(i, d)| d.name == *name.get_ref() && !entry.deployments.contains(&i));
            if clash {
                self.error(
                    name.span(),
                    format!(
                        "name {:?} is also the name of another deployment: names are unique",
                        name.get_ref()
                    ),
                );
            }
        }
    }

    /// Registers every target and submits every deployment to a scratch scheduler, so that
    /// whatever the core would refuse is reported here, at its place in the file.
    fn check_with_core(
        &mut self,
        raw: &RawScenario,
        targets: &[TargetSpec],
        entries: &[Entry],
        deployments: &[Deployment],
    ) {
        let mut scratch: Scheduler = Scheduler::default();
        for (i, (spec, target)) in targets.iter().zip(&raw.targets).enumerate() {
            if let Err(rejection) = scratch.apply_one(0, Command::UpsertTarget(spec.clone())) {
                let t = target.get_ref();
                let mut spans = FieldSpans::new(target.span());
                spans.add("name", t.name.span());
                spans.add_list("environments", &t.environments);
                spans.add_list("roles", &t.roles);
                spans.add_list("tenants", &t.tenants);
                if let Some(capacity) = &t.capacity {
                    spans.add("capacity", capacity.span());
                }
                self.rejected(&format!("targets[{i}]"), &spans, &rejection);
            }
        }
        for (i, entry) in entries.iter().enumerate() {
            for (d, spans) in entry.deployments.iter().zip(&entry.spans) {
                let spec = deployments[*d].spec.clone();
                if let Err(rejection) = scratch.apply_one(0, Command::SubmitTask(spec)) {
                    self.rejected(&format!("tasks[{i}]"), spans, &rejection);
                    break;
                }
            }
        }
    }

    fn rejected(&mut self, prefix: &str, spans: &FieldSpans, rejection: &Rejection) {
        match rejection {
            Rejection::Invalid { field, problem } => {
                self.error(
                    spans.find(field),
                    format!("invalid {prefix}.{field}: {problem}"),
                );
            }
            other => self.error(spans.whole.clone(), other.to_string()),
        }
    }

    fn check_event(
        &mut self,
        event: &Spanned<RawEvent>,
        targets: &[Spanned<RawTarget>],
        deployments: &[Deployment],
    ) -> Option<ScriptedEvent> {
        let e = event.get_ref();
        let at_ms = e.at_ms.0;
        let given = [
            e.cancel.is_some(),
            e.agent_lost.is_some(),
            e.task_cap.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.error(
                event.span(),
                "an event does one thing: give exactly one of cancel = \"deployment name\", agent_lost = \"target name\" or task_cap = N",
            );
            return None;
        }
        if let Some(cap) = e.task_cap {
            return Some(ScriptedEvent {
                at_ms,
                action: Action::SetTaskCap { task_cap: cap.0 },
            });
        }
        if let Some(target) = &e.agent_lost {
            if !targets
                .iter()
                .any(|t| t.get_ref().name.get_ref() == target.get_ref())
            {
                self.error(
                    target.span(),
                    format!(
                        "agent_lost names target {:?}, which is not defined: the targets are {}",
                        target.get_ref(),
                        list_or_none(targets.iter().map(|t| t.get_ref().name.get_ref().as_str()))
                    ),
                );
                return None;
            }
            return Some(ScriptedEvent {
                at_ms,
                action: Action::AgentLost {
                    target: target.get_ref().clone(),
                },
            });
        }
        let name = e.cancel.as_ref()?;
        let matches: Vec<usize> = deployments
            .iter()
            .enumerate()
            .filter(|(_, d)| d.name == *name.get_ref())
            .map(|(i, _)| i)
            .collect();
        match matches[..] {
            [] => {
                let mut names: Vec<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
                names.sort();
                names.dedup();
                self.error(
                    name.span(),
                    format!(
                        "cancel names deployment {:?}, which is not defined: the deployments are {}",
                        name.get_ref(),
                        list_or_none(names.into_iter())
                    ),
                );
                None
            }
            [one] if deployments[one].at_ms > at_ms => {
                self.error(
                    name.span(),
                    format!(
                        "cancel at {at_ms} ms comes before {:?} is submitted at {} ms: cancel it at {} ms or later",
                        name.get_ref(),
                        deployments[one].at_ms,
                        deployments[one].at_ms
                    ),
                );
                None
            }
            [one] => Some(ScriptedEvent {
                at_ms,
                action: Action::Cancel { deployment: one },
            }),
            _ => {
                self.error(
                    name.span(),
                    format!(
                        "cancel names {:?}, the name of {} deployments: give the one to cancel a name of its own (name = \"...\" in its [[tasks]] entry)",
                        name.get_ref(),
                        matches.len()
                    ),
                );
                None
            }
        }
    }
}

pub(super) fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
