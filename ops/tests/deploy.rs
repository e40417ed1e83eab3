//! Releases and deployments through the command line against a real cluster with agents,
//! asserting on the JSON output: a release deploys itself to its automatic first phase, a deploy
//! ahead of the lifecycle is refused with what to do, `deploy --follow` exits with the outcome,
//! tenants get one task each, and a target-scoped variable reaches only its target.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::agents::Agent;
use support::{leader_among, runtime, wait_for, Cluster};

fn endpoints(cluster: &Cluster) -> Vec<String> {
    cluster.nodes.keys().map(|id| cluster.addr(*id)).collect()
}

fn cuttle(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .env("CUTTLE_ENDPOINTS", endpoints(cluster).join(","))
        .env("NO_COLOR", "1")
        .output()
        .expect("run cuttle")
}

fn json(out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "cuttle failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn ok(out: std::process::Output) {
    assert!(
        out.status.success(),
        "cuttle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last line of `--follow --output json`: `{"tasks": [...], "all_succeeded": ...}`.
fn last_json_line(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().expect("some output");
    serde_json::from_str(line).expect("a JSON line")
}

async fn log_text(cluster: &Cluster, id: u64) -> String {
    let page = cluster
        .client_all()
        .read(&format!("task-log:{id}:0"))
        .await
        .unwrap();
    page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn releases_follow_their_lifecycle_and_deploy_reports_through_the_cli() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let eps = endpoints(&cluster);
        let _agents: Vec<Agent> = [
            ("qa-1", &["--env", "QA", "--role", "web"][..]),
            ("stg-1", &["--env", "Staging", "--role", "web"]),
            ("stg-2", &["--env", "Staging", "--role", "web"]),
            (
                "saas-1",
                &[
                    "--env",
                    "Production",
                    "--role",
                    "saas",
                    "--tenant",
                    "acme",
                    "--tenant",
                    "zen",
                ],
            ),
        ]
        .into_iter()
        .map(|(name, args)| Agent::start(&cluster, name, eps.clone(), args))
        .collect();
        wait_for("four agents", Duration::from_secs(20), || async {
            let agents = cluster.client_all().read("agents").await.ok()?;
            (agents.as_array()?.iter().filter(|a| a["connected"] == true).count() == 4)
                .then_some(())
        })
        .await;
        let spec = format!("{}/tests/spec/deploy.toml", env!("CARGO_MANIFEST_DIR"));
        json(cuttle(&cluster, &["apply", "-f", &spec, "--output", "json"]));

        // A release deploys itself to the automatic first phase; --follow waits for it.
        let out = cuttle(
            &cluster,
            &[
                "release", "create", "--project", "web", "--version", "1.0", "--follow",
                "--output", "json",
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let created: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(created["project"], "web");
        assert_eq!(created["version"], "1.0");
        assert_eq!(created["tasks"][0]["environment"], "QA");
        assert_eq!(created["tasks"][0]["tenant"], Value::Null);
        assert_eq!(last_json_line(&out)["all_succeeded"], true, "{text}");

        // Staging is manual, Production is not reached yet.
        let out = cuttle(
            &cluster,
            &["deploy", "--project", "web", "--release", "1.0", "--env", "Production"],
        );
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("release 1.0 of web has not reached Production: deploy it to Staging first (phase Staging)"),
            "{err}"
        );
        let out = cuttle(
            &cluster,
            &[
                "deploy", "--project", "web", "--release", "1.0", "--env", "Staging", "--follow",
                "--output", "json",
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let staging: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())
                .unwrap();
        let id = staging["tasks"][0]["id"].as_u64().unwrap();
        let log = log_text(&cluster, id).await;
        assert!(log.contains("greeting=hello on stg-1 key=********"), "{log}");
        assert!(log.contains("greeting=hello stg-2 on stg-2"), "{log}");
        assert!(!log.contains("s3cr3t-value"), "sensitive values are masked: {log}");

        let releases = json(cuttle(&cluster, &["release", "list", "--output", "json"]));
        let web = &releases["releases"][0];
        assert_eq!(web["version"], "1.0");
        assert_eq!(web["succeeded"][0]["environments"], serde_json::json!(["QA", "Staging"]));
        assert_eq!(web["succeeded"][0]["next_phase"], "Production");

        // Tenants: one task each, in the documented JSON shape.
        ok(cuttle(&cluster, &["release", "create", "--project", "saas", "--version", "2.0"]));
        let two = json(cuttle(
            &cluster,
            &[
                "deploy", "--project", "saas", "--release", "2.0", "--env", "Production",
                "--tenant", "acme", "--tenant", "zen", "--output", "json",
            ],
        ));
        let tasks = two["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 2, "{two}");
        for (task, tenant) in tasks.iter().zip(["acme", "zen"]) {
            assert!(task["id"].as_u64().is_some());
            assert_eq!(task["project"], "saas");
            assert_eq!(task["environment"], "Production");
            assert_eq!(task["tenant"], tenant);
        }
        let all = json(cuttle(
            &cluster,
            &[
                "deploy", "--project", "saas", "--release", "2.0", "--env", "Production",
                "--all-tenants", "--output", "json",
            ],
        ));
        assert_eq!(all["tasks"].as_array().unwrap().len(), 2);
        let out = cuttle(
            &cluster,
            &["deploy", "--project", "saas", "--release", "2.0", "--env", "Production"],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("project saas is tenanted"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // A failing deployment: --follow exits 1 and names the outcome.
        ok(cuttle(&cluster, &["release", "create", "--project", "broken", "--version", "0.1"]));
        let out = cuttle(
            &cluster,
            &["deploy", "--project", "broken", "--release", "0.1", "--env", "QA", "--follow"],
        );
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("about to fail"), "the log is shown: {text}");
        assert!(text.contains("failed"), "{text}");

        let failed = json(cuttle(
            &cluster,
            &["task", "list", "--state", "failed", "--output", "json"],
        ));
        assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
        assert_eq!(failed[0]["project"], "broken");
    });
}
