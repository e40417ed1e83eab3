//! The command line against a real local cluster, asserting on its JSON output: `cuttle apply`
//! checks a spec whole, applies it once, and refuses a bad one with where and why.

mod support;

use support::{leader_among, runtime, Cluster};

fn cuttle(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    let endpoints: Vec<String> = cluster.nodes.keys().map(|id| cluster.addr(*id)).collect();
    std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .env("CUTTLE_ENDPOINTS", endpoints.join(","))
        .output()
        .expect("run cuttle")
}

fn fixture(name: &str) -> String {
    format!("{}/tests/spec/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn apply_checks_a_spec_whole_applies_it_once_and_refuses_a_bad_one() {
    runtime().block_on(async {
        let cluster = Cluster::start(3, &[]);
        leader_among(&cluster, &[1, 2, 3]).await;
        let example = fixture("example.toml");
        let json = |out: std::process::Output| -> serde_json::Value {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).expect("json")
        };
        let dry = json(cuttle(
            &cluster,
            &["apply", "-f", &example, "--dry-run", "--output", "json"],
        ));
        assert_eq!(dry["changed"], serde_json::Value::Null);
        let first = json(cuttle(
            &cluster,
            &["apply", "-f", &example, "--output", "json"],
        ));
        assert_eq!(first["changed"], true, "{first}");
        assert_eq!(first["counts"]["projects"], 1);
        let again = json(cuttle(
            &cluster,
            &["apply", "-f", &example, "--output", "json"],
        ));
        assert_eq!(
            again["changed"], false,
            "applying twice changes nothing: {again}"
        );
        let spec = cluster.client_all().read("spec").await.unwrap();
        assert_eq!(spec["projects"][0]["name"], "web");
        assert_eq!(spec["cluster"]["task_cap"], 10);

        let bad = fixture("bad/references.toml");
        let out = cuttle(&cluster, &["apply", "-f", &bad]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("references.toml:14:")
                && stderr.contains("unknown lifecycle \"defualt\""),
            "{stderr}"
        );
        let still = cluster.client_all().read("spec").await.unwrap();
        assert_eq!(still, spec, "a bad spec changes nothing");
    });
}
