//! The files in `deploy/`: every YAML file parses, the compose file wires
//! tocsin to Prometheus and Alertmanager, the Slack manifest asks for exactly
//! the README's scopes, the container configurations pass `tocsin check`, and
//! the systemd unit passes `systemd-analyze verify` where it is available.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_yaml(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn load_one(path: &str) -> Yaml {
    let mut docs = load_yaml(&deploy(path));
    assert_eq!(docs.len(), 1, "{path}: expected one YAML document");
    docs.remove(0)
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

fn strings(y: &Yaml, what: &str) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {y:?}"))
        .iter()
        .map(|v| str_of(v, what).to_string())
        .collect()
}

fn keys(y: &Yaml, what: &str) -> BTreeSet<String> {
    y.as_hash()
        .unwrap_or_else(|| panic!("{what}: expected a mapping, got {y:?}"))
        .keys()
        .map(|k| str_of(k, what).to_string())
        .collect()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            out.push(path);
        }
    }
}

#[test]
fn every_yaml_file_in_deploy_parses() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    files.sort();
    assert!(files.len() >= 10, "too few YAML files found: {files:?}");
    for file in &files {
        let docs = load_yaml(file);
        assert!(!docs.is_empty(), "{}: no YAML document", file.display());
        for (i, doc) in docs.iter().enumerate() {
            assert!(
                doc.as_hash().is_some(),
                "{} document {i}: expected a mapping, got {doc:?}",
                file.display()
            );
        }
        // Kubernetes manifests: every document is an object with a kind.
        if file.parent().unwrap().ends_with("kubernetes") {
            for doc in &docs {
                str_of(&doc["apiVersion"], "apiVersion");
                str_of(&doc["kind"], "kind");
            }
        }
    }
    // service.yaml holds three documents: the public Service, the API one
    // (port 8081, for operators and Prometheus) and the headless one.
    let services = load_yaml(&deploy("kubernetes/service.yaml"));
    assert_eq!(services.len(), 3);
    assert!(
        services
            .iter()
            .any(|d| d["spec"]["ports"][0]["port"].as_i64() == Some(8081))
    );
    assert!(
        services
            .iter()
            .all(|d| d["kind"].as_str() == Some("Service"))
    );
    assert!(
        services
            .iter()
            .any(|d| d["spec"]["clusterIP"].as_str() == Some("None"))
    );
}

#[test]
fn kubernetes_manifests_are_complete() {
    let kustomization = load_one("kubernetes/kustomization.yaml");
    let resources = strings(&kustomization["resources"], "resources");
    let mut kinds = BTreeSet::new();
    for r in &resources {
        for doc in load_yaml(&deploy("kubernetes").join(r)) {
            kinds.insert(str_of(&doc["kind"], "kind").to_string());
            assert!(
                doc["metadata"]["namespace"].is_badvalue(),
                "{r}: the manifests name no namespace"
            );
        }
    }
    for kind in ["StatefulSet", "Service", "ConfigMap", "Secret"] {
        assert!(kinds.contains(kind), "no {kind} in {resources:?}");
    }

    let sts = load_one("kubernetes/statefulset.yaml");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(1), "sled is single-writer");
    assert!(!spec["volumeClaimTemplates"][0].is_badvalue());
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(strings(&sc["capabilities"]["drop"], "drop"), ["ALL"]);
    assert_eq!(
        str_of(&c["livenessProbe"]["httpGet"]["path"], "liveness"),
        "/healthz"
    );
    assert_eq!(
        str_of(&c["readinessProbe"]["httpGet"]["path"], "readiness"),
        "/readyz"
    );
    // /readyz is on the API listener, not the public one.
    assert_eq!(
        str_of(&c["readinessProbe"]["httpGet"]["port"], "readiness port"),
        "api"
    );
    assert!(!c["resources"]["limits"].is_badvalue());
    assert_eq!(
        str_of(&c["envFrom"][0]["secretRef"]["name"], "envFrom"),
        str_of(
            &load_one("kubernetes/secret.yaml")["metadata"]["name"],
            "secret name"
        )
    );
}

/// `${NAME:-default}` in the compose file: the default.
fn compose_default(value: &str) -> &str {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
        .map(|(_, d)| d)
        .unwrap_or(value)
}

#[test]
fn compose_wires_tocsin_prometheus_and_alertmanager() {
    let compose = load_one("docker-compose.yml");
    let services = &compose["services"];
    let names = keys(services, "services");
    for s in ["tocsin", "prometheus", "alertmanager"] {
        assert!(names.contains(s), "no {s} service in {names:?}");
        assert!(
            !services[s]["healthcheck"].is_badvalue(),
            "{s} has no healthcheck"
        );
        // Bind-mounted files exist (relative to the compose file).
        for v in services[s]["volumes"].as_vec().into_iter().flatten() {
            let v = str_of(v, "volume");
            if let Some(rel) = v.strip_prefix("./") {
                let file = rel.split(':').next().unwrap();
                assert!(deploy(file).exists(), "{s}: {file} does not exist");
            }
        }
    }
    let dockerfile = str_of(&services["tocsin"]["build"]["dockerfile"], "dockerfile");
    let context = str_of(&services["tocsin"]["build"]["context"], "context");
    assert!(deploy(context).join(dockerfile).exists());

    // Alertmanager sends to tocsin, with the keys tocsin is given.
    let env = &services["tocsin"]["environment"];
    let am_key = compose_default(str_of(&env["TOCSIN_ALERTMANAGER_KEY"], "am key"));
    let pd_key = compose_default(str_of(&env["TOCSIN_PAGERDUTY_KEY"], "pd key"));
    let am = load_one("compose/alertmanager.yml");
    let receivers = am["receivers"].as_vec().unwrap();
    let hook = receivers
        .iter()
        .flat_map(|r| r["webhook_configs"].as_vec().cloned().unwrap_or_default())
        .next()
        .expect("a webhook_configs receiver");
    assert_eq!(str_of(&hook["url"], "url"), "http://tocsin:8080/hooks");
    assert_eq!(
        str_of(
            &hook["http_config"]["authorization"]["credentials"],
            "creds"
        ),
        am_key
    );
    let pd = receivers
        .iter()
        .flat_map(|r| r["pagerduty_configs"].as_vec().cloned().unwrap_or_default())
        .next()
        .expect("a pagerduty_configs receiver");
    assert_eq!(str_of(&pd["url"], "url"), "http://tocsin:8080/v2/enqueue");
    assert_eq!(str_of(&pd["routing_key"], "routing_key"), pd_key);

    // Prometheus alerts to Alertmanager and has a rule file with a rule.
    let prom = load_one("compose/prometheus.yml");
    let targets = strings(
        &prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"],
        "targets",
    );
    assert_eq!(targets, ["alertmanager:9093"]);
    let prom_text = read(&deploy("compose/prometheus.yml"));
    assert!(
        prom_text.contains("# - api_version: v2"),
        "the commented direct-to-tocsin example"
    );
    assert!(prom_text.contains(&format!("credentials: {am_key}")));
    let rules = load_one("compose/rules.yml");
    assert!(
        rules["groups"][0]["rules"][0]["alert"].as_str().is_some(),
        "an example rule"
    );
}

/// The scopes in the README's "method | scope" table.
fn readme_slack_scopes() -> BTreeSet<String> {
    let readme = read(&root().join("README.md"));
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.replace(' ', "").starts_with("|method|scope|"));
    assert!(
        lines.next().is_some(),
        "README has no '| method | scope |' table"
    );
    let mut scopes = BTreeSet::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let cell = line.trim_end_matches('|').rsplit('|').next().unwrap();
        for (i, part) in cell.split('`').enumerate() {
            if i % 2 == 1 {
                scopes.insert(part.to_string());
            }
        }
    }
    assert!(!scopes.is_empty(), "no scopes found in the README's table");
    scopes
}

#[test]
fn slack_manifest_matches_the_readme() {
    let m = load_one("slack-app-manifest.yaml");
    let bot = strings(&m["oauth_config"]["scopes"]["bot"], "bot scopes");
    let unique: BTreeSet<String> = bot.iter().cloned().collect();
    assert_eq!(unique.len(), bot.len(), "duplicate scopes: {bot:?}");
    assert_eq!(unique, readme_slack_scopes());

    let commands: BTreeMap<String, &Yaml> = m["features"]["slash_commands"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|c| (str_of(&c["command"], "command").to_string(), c))
        .collect();
    assert_eq!(
        commands.keys().collect::<Vec<_>>(),
        ["/incident", "/maintenance", "/oncall", "/page"]
    );
    for c in commands.values() {
        assert!(str_of(&c["url"], "url").ends_with("/slack/commands"));
        assert!(!str_of(&c["usage_hint"], "usage_hint").is_empty());
    }
    let settings = &m["settings"];
    assert!(
        str_of(&settings["interactivity"]["request_url"], "url").ends_with("/slack/interactions")
    );
    assert!(
        str_of(&settings["event_subscriptions"]["request_url"], "url").ends_with("/slack/events")
    );
    assert_eq!(
        strings(&settings["event_subscriptions"]["bot_events"], "bot_events"),
        ["app_mention"]
    );
    assert_eq!(settings["socket_mode_enabled"].as_bool(), Some(false));
    assert_eq!(settings["token_rotation_enabled"].as_bool(), Some(false));
    assert!(!m["features"]["bot_user"].is_badvalue());
}

/// The `"${NAME}"` references on the uncommented lines of a TOML text.
fn env_refs(toml: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in toml.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(start) = rest.find("\"${") {
            let after = &rest[start + 3..];
            let end = after.find("}\"").expect("closed ${...}");
            names.insert(after[..end].to_string());
            rest = &after[end..];
        }
    }
    names
}

/// Runs `tocsin check` on `config` in a clean environment: `vars` and the
/// overrides the container images set, with the repository's runbooks.
fn check(config: &Path, vars: &BTreeSet<String>) -> std::process::Output {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.env_clear()
        .arg("check")
        .env("TOCSIN_CONFIG", config)
        .env("TOCSIN__SERVER__LISTEN", "0.0.0.0:8081")
        .env("TOCSIN__SERVER__PUBLIC_LISTEN", "0.0.0.0:8080")
        .env("TOCSIN__STORAGE__PATH", data.path())
        .env("TOCSIN__RUNBOOKS__DIR", root().join("runbooks"));
    for name in vars {
        cmd.env(name, format!("deploy-test-{}", name.to_lowercase()));
    }
    cmd.output().unwrap()
}

fn assert_check_passes(config: &Path) {
    let text = read(config);
    let vars = env_refs(&text);
    assert!(
        vars.contains("TOCSIN_API_TOKEN") && vars.len() >= 5,
        "{}: secrets should come from ${{...}}: {vars:?}",
        config.display()
    );
    let out = check(config, &vars);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{}: {stderr}", config.display());
    assert!(
        stdout.contains("OK (4 integrations, 2 services, 6 runbooks"),
        "{stdout}"
    );

    // Without the variables, tocsin refuses and names every one.
    let out = check(config, &BTreeSet::new());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in &vars {
        assert!(stderr.contains(name.as_str()), "{name} not named: {stderr}");
    }
}

#[test]
fn docker_config_passes_tocsin_check() {
    assert_check_passes(&deploy("tocsin.docker.toml"));
}

#[test]
fn kubernetes_configmap_passes_tocsin_check() {
    let cm = load_one("kubernetes/configmap.yaml");
    let text = str_of(&cm["data"]["tocsin.toml"], "tocsin.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, text).unwrap();
    assert_check_passes(&path);
    // Every variable the configuration needs is in the example Secret.
    let secret = load_one("kubernetes/secret.yaml");
    assert_eq!(env_refs(text), keys(&secret["stringData"], "stringData"));
}

/// The example Secret's values are placeholders: a deployment that copies
/// them as they are must not pass `tocsin check`, let alone start.
#[test]
fn the_example_secrets_placeholders_fail_tocsin_check() {
    let cm = load_one("kubernetes/configmap.yaml");
    let text = str_of(&cm["data"]["tocsin.toml"], "tocsin.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, text).unwrap();
    let secret = load_one("kubernetes/secret.yaml");
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.env_clear()
        .arg("check")
        .env("TOCSIN_CONFIG", &path)
        .env("TOCSIN__STORAGE__PATH", data.path())
        .env("TOCSIN__RUNBOOKS__DIR", root().join("runbooks"));
    let values = secret["stringData"].as_hash().unwrap();
    for (k, v) in values {
        cmd.env(str_of(k, "name"), str_of(v, "value"));
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("is a placeholder").count(),
        values.len(),
        "every placeholder is named: {stderr}"
    );
    assert!(stderr.contains("api.token"), "{stderr}");
}

/// Health checks use what the images have, and tocsin's own health does not
/// page through tocsin.
#[test]
fn compose_healthchecks_run_and_self_monitoring_bypasses_tocsin() {
    let compose = load_one("docker-compose.yml");
    let test = strings(
        &compose["services"]["tocsin"]["healthcheck"]["test"],
        "test",
    );
    // The runtime image has the tocsin binary and no curl.
    assert_eq!(test, ["CMD", "tocsin", "health"]);
    let dockerfile = read(&deploy("Dockerfile"));
    assert!(!dockerfile.contains("curl"), "the image installs no curl");
    let am = load_one("compose/alertmanager.yml");
    let down = am["route"]["routes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|r| {
            strings(&r["matchers"], "matchers")
                .iter()
                .any(|m| m.contains("TocsinDown"))
        })
        .expect("a route for TocsinDown");
    let receiver = str_of(&down["receiver"], "receiver");
    let r = am["receivers"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|r| str_of(&r["name"], "name") == receiver)
        .unwrap();
    assert!(
        r["webhook_configs"].is_badvalue() && r["pagerduty_configs"].is_badvalue(),
        "TocsinDown goes to {receiver}, which must not be tocsin"
    );
}

/// docs/deploy.md's systemd section lists every secret the config needs.
#[test]
fn systemd_docs_name_every_secret() {
    let docs = read(&root().join("docs/deploy.md"));
    let vars = env_refs(&read(&deploy("tocsin.docker.toml")));
    for v in &vars {
        assert!(
            docs.contains(&format!("#   {v}=...")),
            "{v} not in the systemd section"
        );
    }
    assert!(!docs.contains("no health subcommand"));
}

#[test]
fn dockerfile_has_what_operators_rely_on() {
    let d = read(&deploy("Dockerfile"));
    for needle in [
        "FROM rust:1-bookworm AS builder",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "--uid 10001",
        "USER 10001",
        "VOLUME [\"/var/lib/tocsin\"]",
        "EXPOSE 8080 8081",
        "TOCSIN_CONFIG=/etc/tocsin/tocsin.toml",
        "TOCSIN__SERVER__LISTEN=0.0.0.0:8081",
        "TOCSIN__SERVER__PUBLIC_LISTEN=0.0.0.0:8080",
        "TOCSIN__STORAGE__PATH=/var/lib/tocsin",
        "TOCSIN__RUNBOOKS__DIR=/usr/share/tocsin/runbooks",
        "COPY runbooks /usr/share/tocsin/runbooks",
        "HEALTHCHECK",
        "STOPSIGNAL SIGTERM",
        "ENTRYPOINT [\"tocsin\"]",
        "CMD [\"serve\"]",
    ] {
        assert!(d.contains(needle), "deploy/Dockerfile lacks {needle:?}");
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = read(&deploy("tocsin.service"));
    for needle in [
        "DynamicUser=yes",
        "StateDirectory=tocsin",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LimitNOFILE=65536",
        "ExecStart=/usr/local/bin/tocsin serve --config /etc/tocsin/tocsin.toml",
    ] {
        assert!(
            unit.contains(needle),
            "deploy/tocsin.service lacks {needle}"
        );
    }
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-analyze is not installed: skipping verify");
        return;
    }
    // verify wants ExecStart's binary to exist: point a copy at the built one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/tocsin", env!("CARGO_BIN_EXE_tocsin")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about other units on the host are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("tocsin")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

/// A YAML document as JSON (the manifest schema is a JSON schema).
fn yaml_to_json(y: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match y {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| (str_of(k, "a manifest key").to_string(), yaml_to_json(v)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[test]
fn the_slack_manifest_passes_slacks_published_schema() {
    let path = crate::common::spec::reference("slack/manifest.schema.1.0.0.json");
    let schema: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("Slack's schema compiles");
    let manifest = yaml_to_json(&load_one("slack-app-manifest.yaml"));
    let errors: Vec<String> = validator
        .iter_errors(&manifest)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The schema is strict enough to catch a slip.
    let mut broken = manifest.clone();
    broken["features"]["slash_commands"][0]["should_escape"] = "yes".into();
    broken["oauth_config"]["scope"] = serde_json::json!({});
    assert!(validator.iter_errors(&broken).count() >= 2);
}

/// A container's environment as a map: `value`s, and `valueFrom` secret
/// references as `secret:NAME/KEY`.
fn container_env(c: &Yaml) -> BTreeMap<String, String> {
    c["env"]
        .as_vec()
        .expect("env")
        .iter()
        .map(|e| {
            let name = str_of(&e["name"], "env name").to_string();
            let value = match e["value"].as_str() {
                Some(v) => v.to_string(),
                None => format!(
                    "secret:{}/{}",
                    str_of(&e["valueFrom"]["secretKeyRef"]["name"], "secret"),
                    str_of(&e["valueFrom"]["secretKeyRef"]["key"], "key")
                ),
            };
            (name, value)
        })
        .collect()
}

/// `tocsin check` on `config` with the environment a replica on
/// PostgreSQL gets: backend, URL and pool size as overrides.
fn check_on_postgres(config: &Path, extra_env: &BTreeMap<String, String>) {
    let vars = env_refs(&read(config));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.env_clear()
        .arg("check")
        .env("TOCSIN_CONFIG", config)
        .env("TOCSIN__RUNBOOKS__DIR", root().join("runbooks"));
    for name in &vars {
        cmd.env(name, format!("deploy-test-{}", name.to_lowercase()));
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_ha_runs_three_replicas_on_postgres() {
    let k = load_one("kubernetes-ha/kustomization.yaml");
    let resources = strings(&k["resources"], "resources");
    assert!(resources.contains(&"../kubernetes".to_string()));
    for r in resources.iter().filter(|r| !r.starts_with("..")) {
        for doc in load_yaml(&deploy("kubernetes-ha").join(r)) {
            str_of(&doc["apiVersion"], "apiVersion");
            str_of(&doc["kind"], "kind");
            assert!(doc["metadata"]["namespace"].is_badvalue(), "{r}");
        }
    }
    // The base's StatefulSet (sled, one replica) is deleted.
    let patch = &k["patches"][0];
    assert_eq!(str_of(&patch["target"]["kind"], "kind"), "StatefulSet");
    let body = YamlLoader::load_from_str(str_of(&patch["patch"], "patch")).unwrap();
    assert_eq!(str_of(&body[0]["$patch"], "$patch"), "delete");
    assert_eq!(
        str_of(&body[0]["metadata"]["name"], "name"),
        str_of(
            &load_one("kubernetes/statefulset.yaml")["metadata"]["name"],
            "sts"
        )
    );

    let d = load_one("kubernetes-ha/deployment.yaml");
    assert_eq!(str_of(&d["kind"], "kind"), "Deployment");
    let spec = &d["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(3));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(1)
    );
    let pod = &spec["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .all(|v| v["persistentVolumeClaim"].is_badvalue())
    );
    assert_eq!(
        str_of(
            &pod["topologySpreadConstraints"][0]["topologyKey"],
            "spread"
        ),
        "kubernetes.io/hostname"
    );
    let c = &pod["containers"][0];
    let env = container_env(c);
    assert_eq!(env["TOCSIN__STORAGE__BACKEND"], "postgres");
    let secret = load_one("kubernetes-ha/database-secret.yaml");
    assert_eq!(
        env["TOCSIN__STORAGE__URL"],
        format!(
            "secret:{}/url",
            str_of(&secret["metadata"]["name"], "secret name")
        )
    );
    assert!(
        str_of(&secret["stringData"]["url"], "url").contains("PLACEHOLDER"),
        "the example URL is a placeholder"
    );
    assert_eq!(
        str_of(&c["readinessProbe"]["httpGet"]["path"], "readiness"),
        "/readyz"
    );
    assert_eq!(
        str_of(&c["readinessProbe"]["httpGet"]["port"], "readiness port"),
        "api"
    );
    assert_eq!(
        str_of(&c["envFrom"][0]["secretRef"]["name"], "envFrom"),
        str_of(
            &load_one("kubernetes/secret.yaml")["metadata"]["name"],
            "secret name"
        )
    );
    // The pods match the base's Services.
    let labels = &spec["template"]["metadata"]["labels"];
    for svc in load_yaml(&deploy("kubernetes/service.yaml")) {
        for (k, v) in svc["spec"]["selector"].as_hash().unwrap() {
            assert_eq!(&labels[str_of(k, "label")], v);
        }
    }
    let pdb = load_one("kubernetes-ha/poddisruptionbudget.yaml");
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(2));

    // The base's configuration passes `tocsin check` on PostgreSQL.
    let cm = load_one("kubernetes/configmap.yaml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, str_of(&cm["data"]["tocsin.toml"], "tocsin.toml")).unwrap();
    let mut extra: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, v)| k.starts_with("TOCSIN__") && !v.starts_with("secret:"))
        .collect();
    extra.insert(
        "TOCSIN__STORAGE__URL".into(),
        "postgres://tocsin:pw@postgres:5432/tocsin".into(),
    );
    extra.remove("TOCSIN__RUNBOOKS__DIR");
    check_on_postgres(&path, &extra);
}

#[test]
fn compose_ha_runs_three_replicas_on_one_postgres() {
    let compose = load_one("docker-compose.ha.yml");
    let services = &compose["services"];
    let names = keys(services, "services");
    let replicas: Vec<&String> = names.iter().filter(|n| n.starts_with("tocsin-")).collect();
    assert_eq!(replicas.len(), 3, "{names:?}");
    assert!(names.contains("postgres"));
    let pg_env = &services["postgres"]["environment"];
    let password = compose_default(str_of(&pg_env["POSTGRES_PASSWORD"], "password"));
    let mut host_ports = BTreeSet::new();
    for r in &replicas {
        let s = &services[r.as_str()];
        let env = &s["environment"];
        assert_eq!(
            str_of(&env["TOCSIN__STORAGE__BACKEND"], "backend"),
            "postgres"
        );
        let url = str_of(&env["TOCSIN__STORAGE__URL"], "url");
        assert!(url.contains("@postgres:5432/"), "{r}: {url}");
        assert!(url.contains("${TOCSIN_DB_PASSWORD:-"), "{r}: {url}");
        assert!(url.contains(password), "{r}: the database's password");
        assert_eq!(
            str_of(&s["depends_on"]["postgres"]["condition"], "depends_on"),
            "service_healthy"
        );
        assert!(!s["healthcheck"].is_badvalue(), "{r}");
        for p in strings(&s["ports"], "ports") {
            assert!(
                host_ports.insert(p.rsplit_once(':').unwrap().0.to_string()),
                "{r}: {p} taken twice"
            );
        }
        for v in s["volumes"].as_vec().into_iter().flatten() {
            if let Some(rel) = str_of(v, "volume").strip_prefix("./") {
                assert!(deploy(rel.split(':').next().unwrap()).exists());
            }
        }
    }
    assert!(!services["postgres"]["healthcheck"].is_badvalue());
    // Each replica's configuration passes `tocsin check` on PostgreSQL.
    let env = &services["tocsin-1"]["environment"];
    let mut extra = BTreeMap::new();
    for k in ["TOCSIN__STORAGE__BACKEND", "TOCSIN__STORAGE__POOL_SIZE"] {
        extra.insert(k.to_string(), str_of(&env[k], k).to_string());
    }
    extra.insert(
        "TOCSIN__STORAGE__URL".into(),
        "postgres://tocsin:pw@postgres:5432/tocsin".into(),
    );
    check_on_postgres(&deploy("tocsin.docker.toml"), &extra);
}
