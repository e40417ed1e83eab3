//! The spec TOML as written: the raw types serde reads it into, strictly (unknown fields are
//! refused by toml itself, with their position), every value that a check may point at kept with
//! its place in the file ([`toml::Spanned`]). Numbers and enumerations are read loosely (as
//! integers and strings) so that a value out of range is one more collected diagnostic of
//! [`super::check`] rather than an error that stops the reading.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    pub(super) cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    pub(super) environments: Vec<Spanned<RawNamed>>,
    #[serde(default)]
    pub(super) tenants: Vec<Spanned<RawNamed>>,
    #[serde(default)]
    pub(super) lifecycles: Vec<Spanned<RawLifecycle>>,
    #[serde(default)]
    pub(super) variable_sets: Vec<Spanned<RawVariableSet>>,
    #[serde(default)]
    pub(super) projects: Vec<Spanned<RawProject>>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) task_cap: Option<Spanned<i64>>,
}

/// `[[environments]]` and `[[tenants]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamed {
    pub(super) name: Spanned<String>,
    pub(super) description: Option<String>,
}

/// `[[lifecycles]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLifecycle {
    pub(super) name: Spanned<String>,
    pub(super) phases: Spanned<Vec<Spanned<RawPhase>>>,
}

/// One entry of `phases = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhase {
    pub(super) name: Spanned<String>,
    pub(super) environments: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) automatic: bool,
}

/// `[[variable_sets]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariableSet {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) variables: Vec<Spanned<RawVariable>>,
}

/// `[[variable_sets.variables]]` and `[[projects.variables]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariable {
    pub(super) name: Spanned<String>,
    pub(super) value: Spanned<String>,
    #[serde(default)]
    pub(super) sensitive: bool,
    pub(super) scope: Option<Spanned<RawScope>>,
}

/// `scope = { environments, roles, tenants, targets }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScope {
    #[serde(default)]
    pub(super) environments: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) tenants: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) targets: Vec<Spanned<String>>,
}

/// `[[projects]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProject {
    pub(super) name: Spanned<String>,
    pub(super) lifecycle: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tenanted: bool,
    #[serde(default)]
    pub(super) variable_sets: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) variables: Vec<Spanned<RawVariable>>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<RawStep>>,
}

/// `[[projects.steps]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) name: Spanned<String>,
    pub(super) roles: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) script: String,
    pub(super) package: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) acquire_script: String,
    pub(super) timeout_ms: Option<Spanned<i64>>,
    pub(super) lock: Option<Spanned<RawLock>>,
}

/// `lock = { name, scope, capacity }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLock {
    pub(super) name: Spanned<String>,
    pub(super) scope: Option<Spanned<String>>,
    pub(super) capacity: Option<Spanned<i64>>,
}
