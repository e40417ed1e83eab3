//! What a unit's script sees: its working directory, its text with `#{Name}` substituted, its
//! environment variables, and the masking of sensitive values in its output. Pure functions of the
//! `RunUnit` and the agent's configuration.
//!
//! # The rules
//!
//! - Working directory `<work_dir>/units/<project>/<environment>/<tenant>/<release>`, where an
//!   untenanted task uses `_untenanted` and each name is made safe by [`path_component`], so two
//!   deployments that differ in any of the four never share a folder.
//! - `#{Name}` in the script is replaced by the value of the variable `Name` (exact match), or of
//!   a built-in: `Cuttle.Release.Number`, `Cuttle.Project.Name`, `Cuttle.Environment.Name`,
//!   `Cuttle.Deployment.Tenant.Name`, `Cuttle.Machine.Name`, `Cuttle.Step.Name`, `Cuttle.Task.Id`.
//!   A variable the unit carries wins over a built-in of the same name. An unknown `#{X}` is left
//!   as written, with one system line warning about it. Values are not scanned again.
//! - Environment: the agent's own, plus `CUTTLE_TASK_ID`, `CUTTLE_PROJECT`, `CUTTLE_RELEASE`,
//!   `CUTTLE_ENVIRONMENT`, `CUTTLE_TENANT` (empty when untenanted), `CUTTLE_TARGET` (the agent's
//!   name), `CUTTLE_STEP`, `CUTTLE_FENCING_TOKEN`, `CUTTLE_UNIT_ID`, `CUTTLE_UNIT_ATTEMPT`,
//!   `CUTTLE_ENDPOINTS` (the agent's endpoints joined by commas, for `cuttle lock run`), and each
//!   variable as `CUTTLE_VAR_<NAME>` ([`variable_env_name`]: the name upper-cased, every byte that
//!   is not an ASCII letter or digit turned into `_`; when two names map to the same variable, the
//!   later one in the unit wins).

use cuttle_proto::v1::RunUnit;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A working-directory component longer than this is cut and ends in a hash of the whole name.
pub const PATH_COMPONENT_BYTES_MAX: usize = 200;
/// What a sensitive value is replaced by in output.
pub const MASK: &str = "********";

/// The working directory of `run` under `work_dir`.
pub fn unit_dir(work_dir: &Path, run: &RunUnit) -> PathBuf {
    let tenant = if run.tenant.is_empty() {
        "_untenanted".to_string()
    } else {
        path_component(&run.tenant)
    };
    work_dir
        .join("units")
        .join(path_component(&run.project))
        .join(path_component(&run.environment))
        .join(tenant)
        .join(path_component(&run.release))
}

/// The variables set for the script, beside the agent's own environment (see the module doc).
pub fn environment(run: &RunUnit, agent_name: &str, endpoints: &[String]) -> Vec<(String, String)> {
    let mut environment = vec![
        ("CUTTLE_TASK_ID".to_string(), run.task.to_string()),
        ("CUTTLE_PROJECT".to_string(), run.project.clone()),
        ("CUTTLE_RELEASE".to_string(), run.release.clone()),
        ("CUTTLE_ENVIRONMENT".to_string(), run.environment.clone()),
        ("CUTTLE_TENANT".to_string(), run.tenant.clone()),
        ("CUTTLE_TARGET".to_string(), agent_name.to_string()),
        ("CUTTLE_STEP".to_string(), run.step.clone()),
        ("CUTTLE_FENCING_TOKEN".to_string(), run.token.to_string()),
        ("CUTTLE_UNIT_ID".to_string(), run.unit.to_string()),
        ("CUTTLE_UNIT_ATTEMPT".to_string(), run.attempt.to_string()),
        ("CUTTLE_ENDPOINTS".to_string(), endpoints.join(",")),
    ];
    for variable in &run.variables {
        environment.push((variable_env_name(&variable.name), variable.value.clone()));
    }
    environment
}

/// `text` as one safe file name: ASCII letters, digits and `-` are kept, and `.` and `_` except
/// in first place; every other byte becomes `%XX`. Distinct names give distinct components: the
/// encoding can be undone, an empty name becomes `_empty` and a cut one ends in `~` and a hash,
/// none of which an encoded name can be. So `..`, `/`, `\`, NUL and leading dots never reach the
/// file system, and no name can be `_untenanted`.
pub fn path_component(text: &str) -> String {
    if text.is_empty() {
        return "_empty".to_string();
    }
    let mut out = String::with_capacity(text.len());
    for (index, byte) in text.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric()
            || byte == b'-'
            || (index > 0 && (byte == b'.' || byte == b'_'));
        if keep {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    if out.len() > PATH_COMPONENT_BYTES_MAX {
        let mut cut = PATH_COMPONENT_BYTES_MAX - 17;
        // Never split a %XX escape.
        while out.as_bytes()[cut.saturating_sub(2)..cut].contains(&b'%') {
            cut -= 1;
        }
        out.truncate(cut);
        let _ = write!(out, "~{:016x}", fnv1a64(text.as_bytes()));
    }
    out
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The environment variable of the unit variable `name`: `CUTTLE_VAR_` and the name upper-cased,
/// each byte that is not an ASCII letter or digit turned into `_` (`Octopus.Action[x]` gives
/// `CUTTLE_VAR_OCTOPUS_ACTION_X_`).
pub fn variable_env_name(name: &str) -> String {
    let mut out = String::from("CUTTLE_VAR_");
    out.extend(name.bytes().map(|b| {
        if b.is_ascii_alphanumeric() {
            b.to_ascii_uppercase() as char
        } else {
            '_'
        }
    }));
    out
}

/// The values `#{Name}` can refer to: the built-ins, then the unit's variables over them.
pub fn variable_values(run: &RunUnit, agent_name: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let builtins = [
        ("Cuttle.Release.Number", run.release.clone()),
        ("Cuttle.Project.Name", run.project.clone()),
        ("Cuttle.Environment.Name", run.environment.clone()),
        ("Cuttle.Deployment.Tenant.Name", run.tenant.clone()),
        ("Cuttle.Machine.Name", agent_name.to_string()),
        ("Cuttle.Step.Name", run.step.clone()),
        ("Cuttle.Task.Id", run.task.to_string()),
    ];
    for (name, value) in builtins {
        values.insert(name.to_string(), value);
    }
    for variable in &run.variables {
        values.insert(variable.name.clone(), variable.value.clone());
    }
    values
}

/// Replaces each `#{Name}` whose name is in `values`; returns the script and the unknown names,
/// each once, in order of appearance.
pub fn substitute(script: &str, values: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(script.len());
    let mut unknown: Vec<String> = Vec::new();
    let mut rest = script;
    while let Some(start) = rest.find("#{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name = after.find('}').map(|end| &after[..end]);
        match name {
            Some(name) if !name.contains(['{', '\n']) => {
                match values.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        out.push_str(&rest[start..start + name.len() + 3]);
                        if !unknown.iter().any(|u| u == name) {
                            unknown.push(name.to_string());
                        }
                    }
                }
                rest = &after[name.len() + 1..];
            }
            _ => {
                out.push_str("#{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out, unknown)
}

/// Replaces the values of sensitive variables in output.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    pub fn new(run: &RunUnit) -> Masker {
        let mut secrets = Vec::new();
        for variable in run.variables.iter().filter(|v| v.sensitive) {
            secrets.push(variable.value.clone());
            // Output arrives line by line, so each line of a multi-line secret is masked too.
            if variable.value.contains('\n') {
                secrets.extend(
                    variable
                        .value
                        .lines()
                        .map(|l| l.trim_end_matches('\r').to_string()),
                );
            }
        }
        secrets.retain(|s| !s.trim().is_empty());
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Masker { secrets }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_proto::v1::Variable;

    fn variable(name: &str, value: &str, sensitive: bool) -> Variable {
        Variable {
            name: name.into(),
            value: value.into(),
            sensitive,
        }
    }

    #[test]
    fn path_components_are_safe_and_distinct() {
        let names = [
            "",
            ".",
            "..",
            "...",
            ".hidden",
            "a/b",
            "a\\b",
            "a%2Fb",
            "a\0b",
            "%",
            "_untenanted",
            "_empty",
            "x_y",
            "x.y",
            "Ünïcode",
            "a b",
            "a~b",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            let component = path_component(name);
            assert!(!component.is_empty());
            assert!(!component.starts_with('.'), "{name:?} -> {component}");
            assert!(
                !component.contains(['/', '\\', '\0']),
                "{name:?} -> {component}"
            );
            assert_ne!(component, "_untenanted");
            assert!(
                seen.insert(component.clone()),
                "{name:?} -> {component} twice"
            );
        }
        assert_eq!(path_component(".."), "%2E.");
        assert_eq!(path_component("a/b"), "a%2Fb");
        assert_eq!(path_component("1.2.3"), "1.2.3");
        let long_a = "a".repeat(300);
        let long_b = format!("{}b", "a".repeat(299));
        let (cut_a, cut_b) = (path_component(&long_a), path_component(&long_b));
        assert!(cut_a.len() <= PATH_COMPONENT_BYTES_MAX && cut_a.contains('~'));
        assert_ne!(cut_a, cut_b);
        let escapes = path_component(&"/".repeat(100));
        assert!(escapes.len() <= PATH_COMPONENT_BYTES_MAX);
        let before_hash = escapes.split('~').next().unwrap();
        assert!(
            before_hash.len().is_multiple_of(3),
            "no escape is split: {escapes}"
        );
    }

    #[test]
    fn substitution_replaces_known_names_once_and_keeps_the_rest() {
        let values: BTreeMap<String, String> = [("A", "#{B}"), ("B", "bee")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (script, unknown) = substitute("x#{A}y #{B} #{C} #{C} #{ #{B} tail #{", &values);
        assert_eq!(script, "x#{B}y bee #{C} #{C} #{ bee tail #{");
        assert_eq!(unknown, vec!["C".to_string()]);
        assert_eq!(
            variable_env_name("App.Pool Name-2"),
            "CUTTLE_VAR_APP_POOL_NAME_2"
        );
        assert_eq!(variable_env_name("é"), "CUTTLE_VAR___");
    }

    #[test]
    fn multi_line_secrets_are_masked_line_by_line() {
        let job = RunUnit {
            variables: vec![
                variable("Key", "line-one\r\nline-two", true),
                variable("Short", "ab", true),
                variable("Blank", " ", true),
            ],
            ..RunUnit::default()
        };
        let masker = Masker::new(&job);
        assert_eq!(masker.mask("x line-two y ab z"), "x ******** y ******** z");
        assert_eq!(masker.mask("spaces  stay"), "spaces  stay");
    }
}
