//! Variable resolution, the core's task built from a spec, and lifecycles: the precedence rules
//! one by one (table-driven), the Octopus aliases and a bypass variable living in a variable set
//! (seed 002) reaching the task's bypass rule, and lifecycle promotion and refusal.

use cuttle::spec::{self, lifecycle, Model, ResolveError};
use cuttle_raft::sched::BypassRule;
use std::collections::BTreeSet;

const HEAD: &str = r#"
[[environments]]
name = "QA"
[[environments]]
name = "Production"
[[tenants]]
name = "acme"
[[tenants]]
name = "globex"
"#;

const STEP: &str = "[[projects.steps]]\nname = \"deploy\"\nroles = [\"web\"]\nscript = \"true\"\n";

/// One value: source ("s1", "s2" or "project"), value and scope (TOML inline table body).
type Value = (&'static str, &'static str, &'static str);

/// A spec where sets s1 and s2 and project p (tenanted, sets s1 then s2) each give values of `X`.
fn precedence_model(values: &[Value]) -> Model {
    let mut text = HEAD.to_string();
    let var = |(_, value, scope): &Value| {
        format!("name = \"X\"\nvalue = \"{value}\"\nscope = {{ {scope} }}\n")
    };
    for set in ["s1", "s2"] {
        text += &format!("[[variable_sets]]\nname = \"{set}\"\n");
        for v in values.iter().filter(|v| v.0 == set) {
            text += &format!("[[variable_sets.variables]]\n{}", var(v));
        }
    }
    text += "[[projects]]\nname = \"p\"\ntenanted = true\nvariable_sets = [\"s1\", \"s2\"]\n";
    for v in values.iter().filter(|v| v.0 == "project") {
        text += &format!("[[projects.variables]]\n{}", var(v));
    }
    text += STEP;
    spec::parse(&text, "p.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn resolved_x(model: &Model, environment: &str, tenant: &str) -> Option<String> {
    let p = model.project("p").unwrap();
    let r = spec::resolve(model, p, environment, Some(tenant));
    r.variables
        .iter()
        .find(|v| v.name == "X")
        .map(|v| v.value.clone())
}

/// A rule, its values, the deployment's environment and tenant, and the value that wins.
type Case = (
    &'static str,
    &'static [Value],
    &'static str,
    &'static str,
    Option<&'static str>,
);

#[test]
fn precedence_table() {
    // (rule, values, environment, tenant, expected winner)
    let cases: &[Case] = &[
        (
            "an unscoped value applies",
            &[("s1", "u", "")],
            "QA",
            "acme",
            Some("u"),
        ),
        (
            "environment beats unscoped",
            &[("s1", "e", "environments = [\"QA\"]"), ("s1", "u", "")],
            "QA",
            "acme",
            Some("e"),
        ),
        (
            "a value for another environment does not apply",
            &[
                ("s1", "u", ""),
                ("s1", "e", "environments = [\"Production\"]"),
            ],
            "QA",
            "acme",
            Some("u"),
        ),
        (
            "a value for another tenant does not apply",
            &[("s1", "t", "tenants = [\"globex\"]")],
            "QA",
            "acme",
            None,
        ),
        (
            "tenant beats environment (one dimension each)",
            &[
                ("s1", "t", "tenants = [\"acme\"]"),
                ("s1", "e", "environments = [\"QA\"]"),
            ],
            "QA",
            "acme",
            Some("t"),
        ),
        (
            "two dimensions beat one, even the higher-ranked one",
            &[
                ("s1", "te", "tenants = [\"acme\"], environments = [\"QA\"]"),
                ("project", "t", "tenants = [\"acme\"]"),
            ],
            "QA",
            "acme",
            Some("te"),
        ),
        (
            "a project's own value beats a set's at equal specificity",
            &[("project", "p", ""), ("s2", "s", "")],
            "QA",
            "acme",
            Some("p"),
        ),
        (
            "a more specific set value beats the project's unscoped one",
            &[("project", "p", ""), ("s1", "s", "environments = [\"QA\"]")],
            "QA",
            "acme",
            Some("s"),
        ),
        (
            "the later set in the project's list wins",
            &[("s2", "second set", ""), ("s1", "first set", "")],
            "QA",
            "acme",
            Some("second set"),
        ),
        (
            "within one source the later value wins",
            &[("s1", "first", ""), ("s1", "second", "")],
            "QA",
            "acme",
            Some("second"),
        ),
        (
            "role- and target-scoped plain values stay out of the payload",
            &[
                ("s1", "u", ""),
                ("project", "r", "roles = [\"web\"]"),
                ("project", "t", "targets = [\"web01\"]"),
            ],
            "QA",
            "acme",
            Some("u"),
        ),
    ];
    for (rule, values, environment, tenant, expected) in cases {
        let model = precedence_model(values);
        assert_eq!(
            resolved_x(&model, environment, tenant).as_deref(),
            *expected,
            "{rule}"
        );
    }
}

/// Special variables keep their role and target scopes; the same ranking decides within each.
fn bypass(values: &[Value]) -> BypassRule {
    let mut text = HEAD.to_string();
    text += "[[variable_sets]]\nname = \"s1\"\n";
    for (_, value, scope) in values.iter().filter(|v| v.0 == "s1") {
        text += &format!("[[variable_sets.variables]]\nname = \"Cuttle.BypassDeploymentMutex\"\nvalue = \"{value}\"\nscope = {{ {scope} }}\n");
    }
    text += "[[projects]]\nname = \"p\"\ntenanted = true\nvariable_sets = [\"s1\"]\n";
    for (_, value, scope) in values.iter().filter(|v| v.0 == "project") {
        text += &format!("[[projects.variables]]\nname = \"OctopusBypassDeploymentMutex\"\nvalue = \"{value}\"\nscope = {{ {scope} }}\n");
    }
    text += STEP;
    let model = spec::parse(&text, "p.toml").unwrap();
    spec::task_spec(&model, "p", "1.0.0", "QA", Some("acme"))
        .unwrap()
        .0
        .bypass
}

#[test]
fn special_variables_keep_role_and_target_scopes() {
    let rule = bypass(&[
        ("s1", "true", ""),
        ("s1", "false", "roles = [\"web\", \"db\"]"),
        ("s1", "true", "roles = [\"web\"], environments = [\"QA\"]"),
        ("s1", "true", "targets = [\"web01\"], roles = [\"web\"]"),
        (
            "s1",
            "false",
            "roles = [\"web\"], environments = [\"Production\"]",
        ),
    ]);
    assert_eq!(
        rule,
        BypassRule {
            default: true,
            roles: vec![("db".into(), false), ("web".into(), true)],
            targets: vec![("web01".into(), true)],
        }
    );
    // A project's own value (under the Octopus alias) beats the set's at equal specificity.
    let rule = bypass(&[
        ("s1", "true", "roles = [\"web\"]"),
        ("project", "False", "roles = [\"web\"]"),
    ]);
    assert_eq!(rule.roles, [("web".to_string(), false)]);
}

const SEED_002: &str = r#"
[[environments]]
name = "QA"
[[environments]]
name = "Production"
[[tenants]]
name = "acme"
[[tenants]]
name = "globex"

[[variable_sets]]
name = "concurrency"
[[variable_sets.variables]]
name = "Cuttle.BypassDeploymentMutex"
value = "true"
scope = { environments = ["QA"], roles = ["web"], tenants = ["acme"] }

[[variable_sets]]
name = "octopus"
[[variable_sets.variables]]
name = "OctopusBypassDeploymentMutex"
value = "True"
[[variable_sets.variables]]
name = "Octopus.Action.MaxParallelism"
value = "5"
[[variable_sets.variables]]
name = "Octopus.Acquire.MaxParallelism"
value = "3"
[[variable_sets.variables]]
name = "Octopus.Task.ConcurrencyTag"
value = "hosting-group-1"
[[variable_sets.variables]]
name = "DbPassword"
value = "hunter2"
sensitive = true

[[projects]]
name = "shop"
tenanted = true
variable_sets = ["concurrency"]
[[projects.steps]]
name = "deploy"
roles = ["web"]
script = "echo deploy"
package = "shop-web"
acquire_script = "echo fetch"
timeout_ms = 60000

[[projects]]
name = "legacy"
variable_sets = ["octopus"]
[[projects.steps]]
name = "deploy"
roles = ["web"]
script = "echo deploy"
"#;

#[test]
fn bypass_in_a_variable_set_reaches_the_task_seed_002() {
    let model = spec::parse(SEED_002, "seed.toml").unwrap();
    let (spec, payload) = spec::task_spec(&model, "shop", "1.0.0", "QA", Some("acme")).unwrap();
    assert_eq!(
        spec.bypass,
        BypassRule {
            default: false,
            roles: vec![("web".into(), true)],
            targets: vec![],
        }
    );
    assert_eq!(spec.tenant.as_deref(), Some("acme"));
    assert_eq!(spec.steps[0].package.as_deref(), Some("shop-web"));
    assert_eq!(payload.steps[0].acquire_script, "echo fetch");
    assert_eq!(payload.steps[0].timeout_ms, 60000);
    // Another tenant, or another environment: the scoped value does not apply.
    for (env, tenant) in [("QA", "globex"), ("Production", "acme")] {
        let (spec, _) = spec::task_spec(&model, "shop", "1.0.0", env, Some(tenant)).unwrap();
        assert_eq!(spec.bypass, BypassRule::default(), "{env}/{tenant}");
    }
}

#[test]
fn octopus_aliases_steer_the_task() {
    let model = spec::parse(SEED_002, "seed.toml").unwrap();
    let (spec, payload) = spec::task_spec(&model, "legacy", "2.0", "Production", None).unwrap();
    assert_eq!(spec.bypass, BypassRule::always(true));
    assert_eq!(spec.steps[0].max_parallelism, 5);
    assert_eq!(spec.acquire_max_parallelism, 3);
    assert_eq!(spec.concurrency_tag.as_deref(), Some("hosting-group-1"));
    let secret = payload
        .variables
        .iter()
        .find(|v| v.name == "DbPassword")
        .unwrap();
    assert!(secret.sensitive);
    assert_eq!(payload.secrets(), ["hunter2"]);
}

#[test]
fn deployments_name_known_things_and_respect_tenancy() {
    let model = spec::parse(SEED_002, "seed.toml").unwrap();
    let err = |p, e, t| spec::task_spec(&model, p, "1", e, t).unwrap_err();
    assert_eq!(
        err("shop", "QA", None),
        ResolveError::TenantRequired("shop".into())
    );
    assert_eq!(
        err("legacy", "QA", Some("acme")).to_string(),
        "project legacy is not tenanted: deploy it without a tenant"
    );
    assert_eq!(
        err("shop", "Dev", Some("acme")),
        ResolveError::UnknownEnvironment("Dev".into())
    );
    assert_eq!(
        err("shop", "QA", Some("initech")),
        ResolveError::UnknownTenant("initech".into())
    );
    assert_eq!(
        err("nope", "QA", None),
        ResolveError::UnknownProject("nope".into())
    );
}

const LIFECYCLES: &str = r#"
[[environments]]
name = "Dev"
[[environments]]
name = "QA1"
[[environments]]
name = "QA2"
[[environments]]
name = "Production"
[[environments]]
name = "Sandbox"

[[lifecycles]]
name = "auto"
phases = [{ name = "Dev", environments = ["Dev"], automatic = true },
          { name = "QA", environments = ["QA1", "QA2"], automatic = true },
          { name = "Production", environments = ["Production"], automatic = true }]

[[lifecycles]]
name = "manual"
phases = [{ name = "QA", environments = ["QA1"] },
          { name = "Production", environments = ["Production"] }]

[[projects]]
name = "web"
lifecycle = "auto"
[[projects.steps]]
name = "deploy"
roles = ["web"]

[[projects]]
name = "api"
lifecycle = "manual"
[[projects.steps]]
name = "deploy"
roles = ["web"]

[[projects]]
name = "tools"
[[projects.steps]]
name = "deploy"
roles = ["web"]
"#;

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn automatic_phases_promote_a_release() {
    let model = spec::parse(LIFECYCLES, "l.toml").unwrap();
    let web = model.project("web").unwrap();
    assert_eq!(lifecycle::on_release_created(&model, web), ["Dev"]);
    assert_eq!(
        lifecycle::after_success(&model, web, &set(&[]), "Dev"),
        ["QA1", "QA2"]
    );
    // Half a phase promotes nothing.
    assert!(lifecycle::after_success(&model, web, &set(&["Dev"]), "QA1").is_empty());
    assert_eq!(
        lifecycle::after_success(&model, web, &set(&["Dev", "QA1"]), "QA2"),
        ["Production"]
    );
    // A second success in a complete phase promotes nothing again.
    assert!(lifecycle::after_success(&model, web, &set(&["Dev", "QA1", "QA2"]), "Dev").is_empty());
    let auto = model.lifecycle("auto").unwrap();
    assert_eq!(lifecycle::progress(auto, &set(&["Dev", "QA2"])).reached, 1);
    assert_eq!(
        lifecycle::progress(auto, &set(&["Dev", "QA1", "QA2", "Production"])).reached,
        3
    );
}

#[test]
fn manual_phases_wait_and_unreached_environments_are_refused() {
    let model = spec::parse(LIFECYCLES, "l.toml").unwrap();
    let api = model.project("api").unwrap();
    assert!(lifecycle::on_release_created(&model, api).is_empty());
    assert!(lifecycle::after_success(&model, api, &set(&[]), "QA1").is_empty());
    assert!(lifecycle::check_deploy(&model, api, "1.2.0", "QA1", &set(&[])).is_ok());
    let refused =
        lifecycle::check_deploy(&model, api, "1.2.0", "Production", &set(&[])).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "release 1.2.0 of api has not reached Production: deploy it to QA1 first (phase QA)"
    );
    assert!(lifecycle::check_deploy(&model, api, "1.2.0", "Production", &set(&["QA1"])).is_ok());
    // Redeploying to an earlier phase stays allowed.
    assert!(
        lifecycle::check_deploy(&model, api, "1.2.0", "QA1", &set(&["QA1", "Production"])).is_ok()
    );
    let web = model.project("web").unwrap();
    assert_eq!(
        lifecycle::check_deploy(&model, web, "3.0", "Production", &set(&["Dev", "QA2"]))
            .unwrap_err()
            .to_string(),
        "release 3.0 of web has not reached Production: deploy it to QA1 first (phase QA)"
    );
    assert_eq!(
        lifecycle::check_deploy(&model, api, "1.2.0", "Sandbox", &set(&[])).unwrap_err().to_string(),
        "environment Sandbox is not in lifecycle manual of project api: deploy to one of QA1, Production"
    );
}

#[test]
fn a_project_without_a_lifecycle_deploys_anywhere() {
    let model = spec::parse(LIFECYCLES, "l.toml").unwrap();
    let tools = model.project("tools").unwrap();
    for env in ["Production", "Sandbox", "Dev"] {
        assert!(lifecycle::check_deploy(&model, tools, "1", env, &set(&[])).is_ok());
    }
    assert!(lifecycle::on_release_created(&model, tools).is_empty());
    assert!(lifecycle::after_success(&model, tools, &set(&[]), "Dev").is_empty());
}

#[test]
fn the_example_of_issue_5_builds_its_task() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec/example.toml");
    let model = spec::load(&path).unwrap();
    let (spec, payload) = spec::task_spec(&model, "web", "1.2.0", "QA", None).unwrap();
    // The set's bypass is scoped to tenant acme: it never applies to the untenanted project.
    assert_eq!(spec.bypass, BypassRule::default());
    assert_eq!(spec.steps[0].max_parallelism, 5);
    assert_eq!(spec.concurrency_tag, None);
    assert_eq!(spec.steps[0].lock.as_ref().unwrap().name, "iis");
    assert_eq!(
        payload.steps[0].script,
        "echo deploying #{Cuttle.Release.Number} to $CUTTLE_TARGET"
    );
    let web = model.project("web").unwrap();
    assert_eq!(lifecycle::on_release_created(&model, web), ["QA"]);
    assert_eq!(
        lifecycle::check_deploy(&model, web, "1.2.0", "Production", &set(&[]))
            .unwrap_err()
            .to_string(),
        "release 1.2.0 of web has not reached Production: deploy it to QA first (phase QA)"
    );
}
