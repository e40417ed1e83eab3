//! The spec checker against good and bad files: the example spec of issue 5 loads into the model
//! it describes, and each bad input under `tests/spec/bad/` gives its exact diagnostics (file,
//! line, column, field path, what would be valid).

use cuttle::spec::{self, Model, SpecError};
use cuttle_raft::sched::LockScope;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/spec")
        .join(name)
}

fn errors(text: &str) -> Vec<String> {
    match spec::parse(text, "spec.toml") {
        Ok(_) => Vec::new(),
        Err(SpecError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

fn bad(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture(&format!("bad/{name}.toml"))).unwrap();
    errors(&text)
}

#[test]
fn the_example_of_issue_5_loads() {
    let model = spec::load(&fixture("example.toml")).unwrap();
    assert_eq!(model.cluster.task_cap, Some(10));
    let names = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        model
            .environments
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>(),
        names(vec!["Production", "QA"]),
        "sorted by name"
    );
    let web = model.project("web").unwrap();
    assert_eq!(web.lifecycle.as_deref(), Some("default"));
    assert!(!web.tenanted);
    assert_eq!(web.variable_sets, ["concurrency"]);
    assert_eq!(web.steps.len(), 1);
    let lock = web.steps[0].lock.as_ref().unwrap();
    assert_eq!(
        (lock.name.as_str(), lock.scope, lock.capacity),
        ("iis", LockScope::Target, 1)
    );
    let lifecycle = model.lifecycle("default").unwrap();
    assert_eq!(lifecycle.phases.len(), 2);
    assert!(lifecycle.phases[0].automatic && !lifecycle.phases[1].automatic);
    let set = model.variable_set("concurrency").unwrap();
    assert_eq!(set.variables[0].scope.roles, ["web"]);
    assert_eq!(set.variables[0].scope.tenants, ["acme"]);
}

#[test]
fn the_model_round_trips_through_serde() {
    let model = spec::load(&fixture("example.toml")).unwrap();
    let json = serde_json::to_string(&model).unwrap();
    let back: Model = serde_json::from_str(&json).unwrap();
    assert_eq!(back, model);
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = spec::load(&fixture("no-such-file.toml")).unwrap_err();
    assert!(matches!(err, SpecError::Read { .. }), "{err}");
    assert!(err.diagnostics().is_empty());
}

#[test]
fn unknown_field_is_reported_by_toml_with_its_place_and_path() {
    assert_eq!(
        bad("unknown_field"),
        ["spec.toml:6:1: projects[0].lifecycel: unknown field `lifecycel`, expected one of `name`, `lifecycle`, `tenanted`, `variable_sets`, `variables`, `steps`"]
    );
}

#[test]
fn wrong_types_are_reported_with_their_place_and_path() {
    assert_eq!(
        bad("wrong_type"),
        ["spec.toml:6:12: projects[0].tenanted: invalid type: string \"no\", expected a boolean"]
    );
    assert_eq!(
        bad("wrong_type_nested"),
        ["spec.toml:8:16: projects[0].steps[1].roles[1]: invalid type: integer `3`, expected a string"]
    );
}

#[test]
fn unknown_references_and_bad_scopes_are_all_reported() {
    assert_eq!(
        bad("references"),
        [
            "spec.toml:10:50: lifecycles[0].phases[1].environments[0]: unknown environment \"Prod\": define it under [[environments]] or use one of: QA",
            "spec.toml:14:13: projects[0].lifecycle: unknown lifecycle \"defualt\": define it under [[lifecycles]] or use one of: default",
            "spec.toml:16:18: projects[0].variable_sets[0]: unknown variable set \"common\": define it under [[variable_sets]]; none is defined yet",
            "spec.toml:20:27: projects[0].variables[0].scope.environments[0]: unknown environment \"Staging\": define it under [[environments]] or use one of: QA",
            "spec.toml:20:50: projects[0].variables[0].scope.tenants[0]: unknown tenant \"globex\": define it under [[tenants]] or use one of: acme",
        ]
    );
}

#[test]
fn duplicate_names_are_all_reported() {
    assert_eq!(
        bad("duplicates"),
        [
            "spec.toml:4:8: environments[1].name: duplicate environment \"QA\": already defined on line 2; give every environment its own name",
            "spec.toml:9:8: tenants[1].name: duplicate tenant \"acme\": already defined on line 7; give every tenant its own name",
            "spec.toml:14:20: lifecycles[0].phases[1].name: duplicate phase \"QA\": already defined on line 13; give every phase its own name",
            "spec.toml:14:42: lifecycles[0].phases[1].environments[0]: environment \"QA\" is already in phase \"QA\" of lifecycle \"default\": an environment belongs to one phase of a lifecycle",
            "spec.toml:19:8: variable_sets[1].name: duplicate variable set \"common\": already defined on line 17; give every variable set its own name",
            "spec.toml:23:28: projects[0].variable_sets[1]: variable set \"common\" is listed twice: list each set once (a later set wins over an earlier one)",
            "spec.toml:28:8: projects[0].steps[1].name: duplicate step \"deploy\": already defined on line 25; give every step its own name",
            "spec.toml:32:8: projects[1].name: duplicate project \"web\": already defined on line 22; give every project its own name",
        ]
    );
}

#[test]
fn bad_special_variables_are_refused_with_the_cores_words() {
    assert_eq!(
        bad("special"),
        [
            "spec.toml:8:9: variable_sets[0].variables[0].value: variable OctopusBypassDeploymentMutex = \"yes\" is not valid: use True or False",
            "spec.toml:11:9: variable_sets[0].variables[1].value: variable Octopus.Action.MaxParallelism = \"0\" is not valid: use a whole number from 1 to 4294967295",
            "spec.toml:15:9: variable_sets[0].variables[2].scope: variable Cuttle.Task.HoldTargets = \"true\" is not valid: scope it to environments or tenants only: it applies to the whole task",
            "spec.toml:22:9: projects[0].variables[0].value: variable Cuttle.Acquire.MaxParallelism = \"many\" is not valid: use a whole number from 1 to 4294967295",
        ]
    );
}

#[test]
fn limits_empty_names_phases_and_untenanted_tenant_scopes() {
    assert_eq!(
        bad("limits"),
        [
            "spec.toml:2:12: cluster.task_cap: is -1; the task cap is a whole number from 0 (pauses admission) to 4294967295",
            "spec.toml:5:8: environments[0].name: \"\" is empty; give a name",
            "spec.toml:9:10: lifecycles[0].phases: lifecycle \"empty\" has no phases: give at least one, as { name = \"QA\", environments = [\"QA\"] }",
            "spec.toml:13:80: lifecycles[1].phases[1].environments[0]: environment \"QA\" is already in phase \"A\" of lifecycle \"twice\": an environment belongs to one phase of a lifecycle",
            "spec.toml:27:22: projects[0].variables[0].scope.tenants: project \"web\" is not tenanted, so a value scoped to tenants never applies: set tenanted = true on the project or remove the tenant scope",
            "spec.toml:30:9: projects[0].steps[0].roles: is empty: give the roles of the targets the step runs on, as roles = [\"web\"]",
            "spec.toml:31:14: projects[0].steps[0].timeout_ms: is -5; give 0 (no limit) to 604800000 ms (a week)",
            "spec.toml:32:32: projects[0].steps[0].lock.scope: is \"node\": use \"target\" (one lock per target) or \"cluster\" (one lock for the cluster)",
            "spec.toml:32:51: projects[0].steps[0].lock.capacity: is 0; a lock's capacity is a whole number from 1 to 4294967295",
            "spec.toml:35:8: projects[1].steps: project \"api\" has no steps: add at least one [[projects.steps]] with name, roles and script",
        ]
    );
}

#[test]
fn the_cores_own_checks_point_at_the_step() {
    assert_eq!(
        bad("core"),
        ["spec.toml:8:8: projects[0].steps[1].lock.capacity: is 2 but an earlier step declares lock \"iis\" with capacity 1; use one capacity per lock"]
    );
}

#[test]
fn a_task_cap_too_large_is_refused() {
    assert_eq!(
        errors("[cluster]\ntask_cap = 4294967296\n"),
        ["spec.toml:2:12: cluster.task_cap: is 4294967296; the task cap is a whole number from 0 (pauses admission) to 4294967295"]
    );
}

#[test]
fn errors_print_one_per_line() {
    let text = std::fs::read_to_string(fixture("bad/references.toml")).unwrap();
    let err = spec::parse(&text, "spec.toml").unwrap_err();
    assert_eq!(err.to_string().lines().count(), 5);
}

#[test]
fn the_issue_text_verbatim_misses_only_the_production_environment() {
    let text = std::fs::read_to_string(fixture("example.toml")).unwrap();
    let verbatim = text.replace("[[environments]]\nname = \"Production\"\n\n", "");
    assert_eq!(
        errors(&verbatim),
        ["spec.toml:14:50: lifecycles[0].phases[1].environments[0]: unknown environment \"Production\": define it under [[environments]] or use one of: QA"]
    );
}
