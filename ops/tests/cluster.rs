//! The replicated cluster as real processes: bootstrap, failover, restart from disk, membership
//! changes under load, catch-up through a snapshot, and a minority that refuses writes.

mod support;

use cuttle_raft::sched::{Command, TargetSpec};
use std::time::Duration;
use support::{leader_among, runtime, wait_for, Cluster, Load};

fn target(name: &str) -> Command {
    Command::UpsertTarget(TargetSpec {
        name: name.into(),
        environments: vec!["Production".into()],
        roles: vec!["web".into()],
        tenants: vec![],
        capacity: 1,
    })
}

async fn targets(client: &cuttle_node::client::Client) -> Vec<String> {
    let json = client.read("targets").await.expect("linearizable read");
    json.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn three_nodes_form_a_cluster_and_report_their_status() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        let leader = leader_among(&cluster, &[1, 2, 3]).await;
        let status = wait_for("three healthy members", Duration::from_secs(10), || async {
            let status = cluster.client(&[1]).status().await.ok()?;
            (status.members.len() == 3 && status.members.iter().all(|m| m.healthy))
                .then_some(status)
        })
        .await;
        assert_eq!(status.leader_id, leader);
        assert!(status.term >= 1);
        let roles: Vec<&str> = status.members.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1);
        assert_eq!(roles.iter().filter(|r| **r == "follower").count(), 2);
        // The CLI prints the same as JSON.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args([
                "cluster",
                "status",
                "--output",
                "json",
                "--endpoints",
                &cluster.addr(2),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["leader_id"], leader);
        assert_eq!(json["members"].as_array().unwrap().len(), 3);
        for key in ["id", "addr", "role", "matched_index", "healthy"] {
            assert!(json["members"][0].get(key).is_some(), "member field {key}");
        }
    });
}

#[test]
fn acknowledged_writes_survive_a_killed_leader_and_the_node_catches_up_after_restart() {
    runtime().block_on(async {
        let mut cluster = Cluster::start(3, &[]);
        let leader = leader_among(&cluster, &[1, 2, 3]).await;
        let client = cluster.client(&[1, 2, 3]);
        let mut acknowledged = Vec::new();
        for i in 0..20 {
            let name = format!("t{i}");
            let (result, _) = client
                .write(&target(&name))
                .await
                .expect("write acknowledged");
            result.expect("command accepted");
            acknowledged.push(name);
        }
        cluster.kill(leader);
        let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
        let new_leader = leader_among(&cluster, &rest).await;
        assert_ne!(new_leader, leader);
        let survivors = cluster.client(&rest);
        // Writes go on, through either survivor.
        for i in 20..30 {
            let name = format!("t{i}");
            survivors
                .write(&target(&name))
                .await
                .expect("write after failover")
                .0
                .unwrap();
            acknowledged.push(name);
        }
        let mut seen = targets(&survivors).await;
        seen.sort();
        let mut expected = acknowledged.clone();
        expected.sort();
        assert_eq!(seen, expected, "every acknowledged write is still there");
        // The killed node restarts from its data directory and catches up.
        cluster.spawn(leader, true);
        let leader_applied = survivors.ping_first().await.unwrap().last_applied;
        let restarted = cluster.client(&[leader]);
        wait_for(
            "the restarted node to catch up",
            Duration::from_secs(20),
            || async {
                let ping = restarted.ping_first().await.ok()?;
                (ping.last_applied >= leader_applied).then_some(())
            },
        )
        .await;
    });
}

#[test]
fn a_minority_refuses_writes_with_a_clear_error_and_recovers_when_healed() {
    runtime().block_on(async {
        let mut cluster = Cluster::start(3, &["--request-timeout-ms", "2000"]);
        let leader = leader_among(&cluster, &[1, 2, 3]).await;
        cluster
            .client(&[1, 2, 3])
            .write(&target("before"))
            .await
            .unwrap()
            .0
            .unwrap();
        // Cut node `alone` off from the other two by pausing them.
        let alone = leader;
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != alone).collect();
        for id in &others {
            cluster.pause(*id);
        }
        let started = std::time::Instant::now();
        let error = cluster
            .client(&[alone])
            .write(&target("during"))
            .await
            .expect_err("a minority accepts no write");
        let elapsed = started.elapsed();
        let message = error.to_string();
        assert!(
            message.starts_with("no quorum: 1 of 3 nodes reachable"),
            "{message}"
        );
        assert!(
            elapsed < Duration::from_secs(6),
            "failed within a bounded time: {elapsed:?}"
        );
        for id in &others {
            cluster.resume(*id);
        }
        leader_among(&cluster, &[1, 2, 3]).await;
        let client = cluster.client(&[1, 2, 3]);
        client
            .write(&target("after"))
            .await
            .expect("writes work again")
            .0
            .unwrap();
        let seen = targets(&client).await;
        assert!(
            seen.contains(&"before".to_string()) && seen.contains(&"after".to_string()),
            "{seen:?}"
        );
    });
}

#[test]
fn membership_grows_to_five_and_shrinks_to_three_under_load() {
    runtime().block_on(async {
        let mut cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let load = Load::start(cluster.client(&[1, 2, 3]), "load", target);
        load.progress(5, "the load to start").await;
        for id in [4, 5] {
            let addr = cluster.spawn_new(id, &[]);
            let reply = cluster
                .client(&[1, 2, 3])
                .add_node(id, &addr)
                .await
                .expect("add node");
            assert!(reply.voters.contains(&id), "{reply:?}");
        }
        let status = cluster.client(&[1]).status().await.unwrap();
        assert_eq!(
            status
                .members
                .iter()
                .filter(|m| m.role != "learner")
                .count(),
            5
        );
        let during_growth = load.count();
        for id in [4, 5] {
            let reply = cluster
                .client(&[1, 2, 3])
                .remove_node(id)
                .await
                .expect("remove node");
            assert!(
                !reply.voters.contains(&id) && !reply.learners.contains(&id),
                "{reply:?}"
            );
            cluster.kill(id);
        }
        // The load goes on with three members again.
        load.progress(5, "writes to continue after shrinking").await;
        let (written, failures) = load.finish().await;
        assert!(during_growth >= 5, "writes went on while the cluster grew");
        assert!(
            failures.is_empty(),
            "writes failed during membership changes: {failures:?}"
        );
        let seen = targets(&cluster.client(&[1, 2, 3])).await;
        for name in &written {
            assert!(seen.contains(name), "acknowledged write {name} lost");
        }
        let status = cluster.client(&[1]).status().await.unwrap();
        assert_eq!(status.members.len(), 3);
    });
}

#[test]
fn a_node_joining_after_log_compaction_catches_up_through_a_snapshot() {
    runtime().block_on(async {
        let flags = [
            "--snapshot-after-entries",
            "20",
            "--log-entries-kept-after-snapshot",
            "5",
        ];
        let mut cluster = Cluster::start(3, &flags);
        leader_among(&cluster, &[1, 2, 3]).await;
        let client = cluster.client(&[1, 2, 3]);
        for i in 0..60 {
            client
                .write(&target(&format!("t{i}")))
                .await
                .unwrap()
                .0
                .unwrap();
        }
        let leader_ping = wait_for(
            "the leader to purge its log",
            Duration::from_secs(20),
            || async {
                let leader = client.status().await.ok()?.leader_id;
                let ping = cluster.client(&[leader]).ping_first().await.ok()?;
                (ping.purged_index > 0).then_some(ping)
            },
        )
        .await;
        let addr = cluster.spawn_new(4, &flags);
        client.add_node(4, &addr).await.expect("add node 4");
        let newcomer = cluster.client(&[4]);
        let ping = wait_for("node 4 to catch up", Duration::from_secs(20), || async {
            let ping = newcomer.ping_first().await.ok()?;
            (ping.last_applied >= leader_ping.last_applied).then_some(ping)
        })
        .await;
        assert!(
            ping.snapshot_index > 0,
            "node 4 was brought up by a snapshot: {ping:?}"
        );
        assert_eq!(targets(&cluster.client(&[4])).await.len(), 60);
        // Killed and restarted, node 4 starts from the snapshot on its disk and the log after it.
        cluster.kill(4);
        client
            .write(&target("while-4-was-down"))
            .await
            .unwrap()
            .0
            .unwrap();
        let leader = client.status().await.unwrap().leader_id;
        let goal = cluster
            .client(&[leader])
            .ping_first()
            .await
            .unwrap()
            .last_applied;
        cluster.spawn(4, false);
        let restarted = cluster.client(&[4]);
        wait_for(
            "node 4 to catch up after its restart",
            Duration::from_secs(20),
            || async {
                let ping = restarted.ping_first().await.ok()?;
                (ping.last_applied >= goal && ping.snapshot_index > 0).then_some(())
            },
        )
        .await;
        assert_eq!(targets(&client).await.len(), 61);
        // Every node logs elections, membership changes, snapshots and compactions at info level.
        let log = cluster.log(leader);
        for line in [
            "election: leader changed",
            "membership changed",
            "snapshot taken or installed",
            "log compacted",
        ] {
            assert!(
                log.contains(line),
                "node {leader}'s log lacks {line:?}:\n{log}"
            );
        }
    });
}

#[test]
fn leadership_moves_away_from_a_node_before_its_maintenance() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        let leader = leader_among(&cluster, &[1, 2, 3]).await;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["cluster", "transfer-leader", "--from", &leader.to_string()])
            .env(
                "CUTTLE_ENDPOINTS",
                format!(
                    "{},{},{}",
                    cluster.addr(1),
                    cluster.addr(2),
                    cluster.addr(3)
                ),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        let new_leader: u64 = printed
            .trim()
            .trim_start_matches("leader is now node ")
            .parse()
            .expect(&printed);
        assert_ne!(new_leader, leader);
        assert_eq!(leader_among(&cluster, &[1, 2, 3]).await, new_leader);
        cluster
            .client(&[1, 2, 3])
            .write(&target("after-transfer"))
            .await
            .unwrap()
            .0
            .unwrap();
    });
}

#[test]
fn bad_server_flags_are_refused_with_what_would_be_right() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .arg("server")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d").display().to_string();
    let (code, err) = run(&[
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--data-dir",
        &data,
        "--election-timeout-min-ms",
        "150",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("election_timeout_min_ms = 150 is shorter than two heartbeats (200 ms)"),
        "{err}"
    );
    let (code, err) = run(&[
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--data-dir",
        &data,
        "--initial-cluster",
        "1=127.0.0.1:1,x",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(
            "initial cluster member \"x\" is not ID=HOST:PORT (for example 1=127.0.0.1:7101)"
        ),
        "{err}"
    );
    // A config file, with a flag overriding it.
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        format!(
            "id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = {data:?}\nheartbeat_interval_ms = 500\n"
        ),
    )
    .unwrap();
    let (code, err) = run(&[
        "--config",
        &file.display().to_string(),
        "--election-timeout-min-ms",
        "600",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("election_timeout_min_ms = 600 is shorter than two heartbeats (1000 ms)"),
        "the file's heartbeat and the flag's timeout were both used: {err}"
    );
    std::fs::write(&file, "id = 1\nlisten_on = \"x\"\n").unwrap();
    let (code, err) = run(&["--config", &file.display().to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown field `listen_on`"), "{err}");
}

#[test]
fn a_rolling_restart_keeps_the_cluster_serving() {
    runtime().block_on(async {
        let mut cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let load = Load::start(cluster.client(&[1, 2, 3]), "r", target);
        for id in [1, 2, 3] {
            // Move leadership away first, as an operator would, then stop, restart, wait.
            let leader = leader_among(&cluster, &[1, 2, 3]).await;
            if leader == id {
                cluster
                    .client(&[1, 2, 3])
                    .transfer_leader(id)
                    .await
                    .expect("leadership moves");
            }
            cluster.stop(id);
            let others: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != id).collect();
            load.progress(5, "writes while a node is down").await;
            cluster.spawn(id, true);
            let goal = cluster
                .client(&others)
                .ping_first()
                .await
                .unwrap()
                .last_applied;
            let restarted = cluster.client(&[id]);
            wait_for(
                "the restarted node to catch up",
                Duration::from_secs(20),
                || async {
                    (restarted.ping_first().await.ok()?.last_applied >= goal).then_some(())
                },
            )
            .await;
        }
        let (written, _) = load.finish().await;
        let seen = targets(&cluster.client(&[1, 2, 3])).await;
        for name in &written {
            assert!(
                seen.contains(name),
                "acknowledged write {name} lost in the rolling restart"
            );
        }
    });
}

#[test]
fn a_follower_cut_off_with_its_leader_answers_no_quorum_too() {
    runtime().block_on(async {
        let mut cluster = Cluster::start(3, &["--request-timeout-ms", "2000"]);
        let leader = leader_among(&cluster, &[1, 2, 3]).await;
        let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
        wait_for("all members healthy", Duration::from_secs(10), || async {
            let status = cluster.client(&[followers[0]]).status().await.ok()?;
            status.members.iter().all(|m| m.healthy).then_some(())
        })
        .await;
        cluster.pause(leader);
        cluster.pause(followers[1]);
        let alone = followers[0];
        let error = cluster
            .client(&[alone])
            .write(&target("x"))
            .await
            .expect_err("no write without a quorum");
        assert!(
            error
                .to_string()
                .starts_with("no quorum: 1 of 3 nodes reachable"),
            "{error}"
        );
        let error = cluster
            .client(&[alone])
            .read("targets")
            .await
            .expect_err("no current read without a quorum");
        assert!(
            error
                .to_string()
                .starts_with("no quorum: 1 of 3 nodes reachable"),
            "{error}"
        );
        cluster.resume(leader);
        cluster.resume(followers[1]);
    });
}
