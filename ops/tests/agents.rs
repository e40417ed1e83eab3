//! Servers and agents together, as real processes: a deployment end to end with its log, the
//! leader killed while a unit runs, an agent killed while a unit runs, an agent cut off from the
//! cluster and healed, and `cuttle lock run` contenders.

mod support;

use std::path::Path;
use std::time::Duration;
use support::agents::{Agent, Proxy};
use support::{leader_among, runtime, wait_for, Cluster};

const LEASE: &[&str] = &[
    "--agent-lease-timeout-ms",
    "3000",
    "--agent-heartbeat-interval-ms",
    "200",
];

fn endpoints(cluster: &Cluster) -> Vec<String> {
    cluster.nodes.keys().map(|id| cluster.addr(*id)).collect()
}

/// Writes a task file with one step `deploy` on role web running `script`; returns its path.
fn task_file(
    dir: &Path,
    name: &str,
    project: &str,
    script: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"project = "{project}"
release = "1.0.{name_len}"
environment = "Production"
{extra}
[[steps]]
name = "deploy"
roles = ["web"]
script = '''{script}'''
"#,
        name_len = name.len()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn cuttle(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .env("CUTTLE_ENDPOINTS", endpoints(cluster).join(","))
        .output()
        .expect("run cuttle")
}

fn submit(cluster: &Cluster, file: &Path) -> u64 {
    let out = cuttle(
        cluster,
        &[
            "task",
            "submit",
            "-f",
            file.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    json["tasks"][0]["id"].as_u64().expect("a task id")
}

async fn task_state(cluster: &Cluster, id: u64) -> Option<serde_json::Value> {
    cluster.client_all().read(&format!("task:{id}")).await.ok()
}

async fn wait_task(cluster: &Cluster, id: u64, state: &str, limit: Duration) -> serde_json::Value {
    wait_for(&format!("task {id} {state}"), limit, || async {
        let task = task_state(cluster, id).await?;
        (task["state"] == state).then_some(task)
    })
    .await
}

async fn wait_attached(cluster: &Cluster, count: usize) {
    wait_for(
        &format!("{count} agents attached"),
        Duration::from_secs(20),
        || async {
            let agents = cluster.client_all().read("agents").await.ok()?;
            (agents
                .as_array()?
                .iter()
                .filter(|a| a["connected"] == true && a["online"] == true)
                .count()
                == count)
                .then_some(())
        },
    )
    .await
}

async fn wait_unit_running(cluster: &Cluster, id: u64) {
    wait_for(
        &format!("a unit of task {id} running"),
        Duration::from_secs(20),
        || async {
            let task = task_state(cluster, id).await?;
            task["units"]
                .as_array()?
                .iter()
                .any(|u| u["state"] == "running")
                .then_some(())
        },
    )
    .await
}

#[test]
fn a_deployment_runs_end_to_end_with_its_log() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        // Each agent dials a different node: followers relay to the leader.
        let _web01 = Agent::start(&cluster, "web01", vec![cluster.addr(1)], &["--env", "Production", "--role", "web"]);
        let _web02 = Agent::start(&cluster, "web02", vec![cluster.addr(2), cluster.addr(3)], &["--env", "Production", "--role", "web"]);
        wait_for("two agents attached", Duration::from_secs(20), || async {
            let agents = cluster.client_all().read("agents").await.ok()?;
            (agents.as_array()?.iter().filter(|a| a["connected"] == true).count() == 2).then_some(())
        })
        .await;
        let file = task_file(
            cluster.tmp.path(),
            "e2e",
            "shop",
            "echo deploying $CUTTLE_PROJECT #{Cuttle.Release.Number} to $CUTTLE_TARGET token $CUTTLE_FENCING_TOKEN; echo password is #{DbPassword}; echo warning >&2; pwd",
            "[[variables]]\nname = \"DbPassword\"\nvalue = \"hunter2\"\nsensitive = true\n",
        );
        let id = submit(&cluster, &file);
        let task = wait_task(&cluster, id, "succeeded", Duration::from_secs(30)).await;
        assert_eq!(task["units"].as_array().unwrap().len(), 2, "one unit per target: {task}");
        let out = cuttle(&cluster, &["task", "logs", &id.to_string(), "--output", "json"]);
        assert!(out.status.success());
        let log = String::from_utf8_lossy(&out.stdout);
        for target in ["web01", "web02"] {
            assert!(log.contains(&format!("deploying shop 1.0.3 to {target} token")), "{log}");
        }
        assert!(log.contains("\"stream\":\"stderr\",\"text\":\"warning\""), "{log}");
        assert!(log.contains("password is ********"), "the secret is masked: {log}");
        assert!(!log.contains("hunter2"), "{log}");
        assert!(log.contains("task succeeded"), "{log}");
        // Working directories are separate per project, environment, tenant and release.
        assert!(log.contains("/shop/Production/"), "{log}");
        // The agent list shows both, with labels.
        let out = cuttle(&cluster, &["agent", "list", "--output", "json"]);
        let agents: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let mut names: Vec<&str> = agents.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["web01", "web02"]);
        assert_eq!(agents[0]["roles"][0], "web");
        assert_eq!(agents[0]["environments"][0], "Production");
        // `task logs --follow` of an ended task prints it and exits 0 (succeeded).
        let out = cuttle(&cluster, &["task", "logs", &id.to_string(), "--follow"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
}

#[test]
fn kill_9_of_the_leader_while_a_unit_runs_records_its_result_once() {
    runtime().block_on(async {
        let mut cluster = Cluster::start(3, &[]);
        let leader = leader_among(&cluster, &[1, 2, 3]).await;
        let agent = Agent::start(
            &cluster,
            "web01",
            endpoints(&cluster),
            &["--env", "Production", "--role", "web"],
        );
        wait_attached(&cluster, 1).await;
        let go = cluster.tmp.path().join("go");
        let script = format!(
            "while [ ! -f {} ]; do sleep 0.05; done; echo finished",
            go.display()
        );
        let id = submit(
            &cluster,
            &task_file(cluster.tmp.path(), "slow", "shop", &script, ""),
        );
        wait_unit_running(&cluster, id).await;
        cluster.kill(leader);
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
        leader_among(&cluster, &others).await;
        std::fs::write(&go, "").unwrap();
        wait_task(&cluster, id, "succeeded", Duration::from_secs(40)).await;
        let starts = agent
            .journal()
            .iter()
            .filter(|r| r["event"] == "start")
            .count();
        assert_eq!(starts, 1, "the unit started once: {:?}", agent.journal());
        let out = cuttle(
            &cluster,
            &["task", "logs", &id.to_string(), "--output", "json"],
        );
        let log = String::from_utf8_lossy(&out.stdout);
        assert_eq!(log.matches("\"text\":\"finished\"").count(), 1, "{log}");
        assert_eq!(
            log.matches("on web01 succeeded").count(),
            1,
            "recorded once: {log}"
        );
    });
}

#[test]
fn kill_9_of_an_agent_fails_its_unit_after_the_lease_and_the_next_task_runs() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, LEASE);
        leader_among(&cluster, &[1, 2, 3]).await;
        let mut agent = Agent::start(
            &cluster,
            "web01",
            endpoints(&cluster),
            &["--env", "Production", "--role", "web"],
        );
        wait_attached(&cluster, 1).await;
        let first = submit(
            &cluster,
            &task_file(cluster.tmp.path(), "a", "shop", "sleep 600", ""),
        );
        wait_unit_running(&cluster, first).await;
        agent.kill();
        let failed = wait_task(&cluster, first, "failed", Duration::from_secs(20)).await;
        assert_eq!(failed["units"][0]["state"], "target-lost", "{failed}");
        // The target is offline until its agent registers again; then the next task runs there,
        // which it could not if the lost unit still held the target.
        agent.spawn();
        wait_attached(&cluster, 1).await;
        let second = submit(
            &cluster,
            &task_file(cluster.tmp.path(), "b", "blog", "echo second ran", ""),
        );
        wait_task(&cluster, second, "succeeded", Duration::from_secs(30)).await;
        let agents = cluster.client_all().read("agents").await.unwrap();
        assert_eq!(agents[0]["online"], true);
        assert_eq!(agents[0]["connected"], true);
    });
}

#[test]
fn an_agent_cut_off_and_healed_never_runs_two_exclusive_units_at_once() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, LEASE);
        leader_among(&cluster, &[1, 2, 3]).await;
        let mut proxies = Vec::new();
        for id in [1, 2, 3] {
            proxies.push(Proxy::start(cluster.addr(id)).await);
        }
        let through: Vec<String> = proxies.iter().map(|p| p.addr.clone()).collect();
        let _agent = Agent::start(&cluster, "web01", through, &["--env", "Production", "--role", "web", "--max-concurrency", "4"]);
        wait_attached(&cluster, 1).await;
        let stamps = cluster.tmp.path().join("stamps");
        let script = |tag: &str, rest: &str| {
            format!("echo \"start {tag} $(date +%s%N)\" >> {s}; {rest}; echo \"end {tag} $(date +%s%N)\" >> {s}", s = stamps.display())
        };
        // The first task's script would run for ten minutes; the trap records when it is stopped.
        let long = format!(
            "trap 'echo \"end a $(date +%s%N)\" >> {s}; exit 143' TERM; echo \"start a $(date +%s%N)\" >> {s}; sleep 600 & wait",
            s = stamps.display()
        );
        let first = submit(&cluster, &task_file(cluster.tmp.path(), "a", "shop", &long, ""));
        wait_unit_running(&cluster, first).await;
        for proxy in &proxies {
            proxy.cut();
        }
        wait_task(&cluster, first, "failed", Duration::from_secs(20)).await;
        // The cluster has released the target; the next exclusive unit runs there once the agent
        // is back. The cut-off agent must have stopped its unit by itself before that.
        for proxy in &proxies {
            proxy.heal();
        }
        wait_attached(&cluster, 1).await;
        let second = submit(&cluster, &task_file(cluster.tmp.path(), "b", "blog", &script("b", "sleep 0.2"), ""));
        wait_task(&cluster, second, "succeeded", Duration::from_secs(30)).await;
        let text = std::fs::read_to_string(&stamps).unwrap();
        let at = |what: &str| -> u128 {
            text.lines()
                .find_map(|l| l.strip_prefix(what).map(|t| t.trim().parse().unwrap()))
                .unwrap_or_else(|| panic!("no {what:?} in {text}"))
        };
        assert!(
            at("end a ") <= at("start b "),
            "the cut-off agent stopped its unit before the next exclusive unit started: {text}"
        );
    });
}

#[test]
fn cuttle_lock_run_contenders_never_hold_a_capacity_1_lock_together() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let stamps = cluster.tmp.path().join("lock-stamps");
        let script = format!(
            "echo \"start $CUTTLE_FENCING_TOKEN $(date +%s%N)\" >> {s}; sleep 0.05; echo \"end $CUTTLE_FENCING_TOKEN $(date +%s%N)\" >> {s}",
            s = stamps.display()
        );
        let mut children = Vec::new();
        for n in 0..4 {
            for round in 0..3 {
                let _ = round;
                children.push(
                    std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
                        .args(["lock", "run", "db", "--ttl", "5s", "--holder", &format!("client{n}"), "--", "bash", "-c", &script])
                        .env("CUTTLE_ENDPOINTS", endpoints(&cluster).join(","))
                        .spawn()
                        .unwrap(),
                );
            }
        }
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let text = std::fs::read_to_string(&stamps).unwrap();
        let mut holding = 0;
        let mut tokens = Vec::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts[0] {
                "start" => {
                    holding += 1;
                    tokens.push(parts[1].parse::<u64>().unwrap());
                }
                _ => holding -= 1,
            }
            assert!(holding <= 1, "two holders at once: {text}");
        }
        assert_eq!(tokens.len(), 12);
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "fencing tokens rise: {tokens:?}");
    });
}

#[test]
fn scripts_in_units_share_a_target_lock_with_cuttle_lock_run() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let _agent = Agent::start(&cluster, "web01", endpoints(&cluster), &["--env", "Production", "--role", "web", "--max-concurrency", "3"]);
        wait_attached(&cluster, 1).await;
        let stamps = cluster.tmp.path().join("iis-stamps");
        // Inside a unit, `--scope target` is the unit's own target and the endpoints come from
        // the agent.
        let script = format!(
            "{cuttle} lock run iis --scope target --ttl 5s -- bash -c 'echo start $CUTTLE_TARGET >> {s}; sleep 0.2; echo end >> {s}'",
            cuttle = env!("CARGO_BIN_EXE_cuttle"),
            s = stamps.display()
        );
        let bypass = "[[variables]]\nname = \"OctopusBypassDeploymentMutex\"\nvalue = \"True\"\n";
        let ids: Vec<u64> = ["shop", "blog", "wiki"]
            .iter()
            .map(|project| submit(&cluster, &task_file(cluster.tmp.path(), project, project, &script, bypass)))
            .collect();
        for id in &ids {
            wait_task(&cluster, *id, "succeeded", Duration::from_secs(40)).await;
        }
        let text = std::fs::read_to_string(&stamps).unwrap();
        let mut holding = 0;
        for line in text.lines() {
            holding += if line.starts_with("start") { 1 } else { -1 };
            assert!(holding <= 1, "two units held the capacity-1 target lock at once: {text}");
        }
        assert_eq!(text.matches("start web01").count(), 3, "{text}");
    });
}

#[test]
fn cancelling_a_running_task_terminates_its_script_and_a_step_timeout_fails_it() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let _agent = Agent::start(&cluster, "web01", endpoints(&cluster), &["--env", "Production", "--role", "web", "--cancel-grace-ms", "2000"]);
        wait_attached(&cluster, 1).await;
        let marks = cluster.tmp.path().join("marks");
        let script = format!(
            "trap 'echo terminated >> {m}; exit 143' TERM; echo started >> {m}; sleep 600 & wait",
            m = marks.display()
        );
        let id = submit(&cluster, &task_file(cluster.tmp.path(), "c", "shop", &script, ""));
        let queued = submit(&cluster, &task_file(cluster.tmp.path(), "d", "shop", "true", ""));
        wait_unit_running(&cluster, id).await;
        // The views show who holds what and who waits.
        let out = cuttle(&cluster, &["locks", "--output", "json"]);
        let locks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("locks json");
        let target = locks.as_array().unwrap().iter().find(|l| l["lock"] == "target web01").expect("the target lock");
        assert_eq!(target["kind"], "target");
        assert_eq!(target["holders"][0]["task"], id, "{locks}");
        assert_eq!(target["holders"][0]["mode"], "exclusive", "{locks}");
        let tag = locks.as_array().unwrap().iter().find(|l| l["kind"] == "concurrency-tag").expect("the tag lock");
        assert_eq!(tag["queue"][0]["task"], queued, "the second shop task waits for the tag: {locks}");
        let out = cuttle(&cluster, &["task", "list", "--state", "queued", "--output", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("task list json");
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert!(list[0]["waiting_for"].as_str().unwrap().contains("concurrency tag shop/Production"), "{list}");
        let out = cuttle(&cluster, &["task", "cancel", &id.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let task = wait_task(&cluster, id, "cancelled", Duration::from_secs(20)).await;
        assert_eq!(task["units"][0]["state"], "cancelled", "{task}");
        let text = std::fs::read_to_string(&marks).unwrap();
        assert!(text.contains("terminated"), "the script got SIGTERM: {text}");
        wait_task(&cluster, queued, "succeeded", Duration::from_secs(20)).await;

        let timed = cluster.tmp.path().join("timed.toml");
        std::fs::write(
            &timed,
            "project = \"blog\"\nrelease = \"2.0\"\nenvironment = \"Production\"\n[[steps]]\nname = \"deploy\"\nroles = [\"web\"]\nscript = \"sleep 600\"\ntimeout_ms = 500\n",
        )
        .unwrap();
        let id = submit(&cluster, &timed);
        let task = wait_task(&cluster, id, "failed", Duration::from_secs(20)).await;
        assert_eq!(task["units"][0]["state"], "failed", "{task}");
        let out = cuttle(&cluster, &["task", "logs", &id.to_string()]);
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(log.contains("timed out after 500 ms"), "{log}");
    });
}

#[test]
fn cuttle_lock_run_stops_its_command_when_it_cannot_keep_the_lease() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let mut proxies = Vec::new();
        for id in [1, 2, 3] {
            proxies.push(Proxy::start(cluster.addr(id)).await);
        }
        let through: Vec<String> = proxies.iter().map(|p| p.addr.clone()).collect();
        let marks = cluster.tmp.path().join("lease-marks");
        let script = format!(
            "trap 'echo stopped >> {m}; exit 143' TERM; echo holding >> {m}; sleep 600 & wait",
            m = marks.display()
        );
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args([
                "lock", "run", "db", "--ttl", "2s", "--", "bash", "-c", &script,
            ])
            .env("CUTTLE_ENDPOINTS", through.join(","))
            .env("CUTTLE_LOG", "warn")
            .spawn()
            .unwrap();
        wait_for(
            "the command to hold the lock",
            Duration::from_secs(20),
            || async {
                std::fs::read_to_string(&marks)
                    .ok()?
                    .contains("holding")
                    .then_some(())
            },
        )
        .await;
        for proxy in &proxies {
            proxy.cut();
        }
        let status = wait_for("cuttle lock run to stop", Duration::from_secs(20), || {
            let done = child.try_wait().unwrap();
            async move { done }
        })
        .await;
        assert!(!status.success(), "losing the lease is a failure");
        let text = std::fs::read_to_string(&marks).unwrap();
        assert!(text.contains("stopped"), "the command was stopped: {text}");
        // Meanwhile the cluster expired the lease: another client gets the lock.
        let out = cuttle(
            &cluster,
            &["lock", "run", "db", "--ttl", "5s", "--", "true"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
