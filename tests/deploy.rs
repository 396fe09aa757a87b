//! The packaging in Dockerfile and deploy/: the container image's invariants
//! (read from the Dockerfile: no registry here to build it), the Kubernetes
//! CronJob (every document parsed and checked), and the CloudFormation
//! template deployed into moto, its roles, task definition and trigger read
//! back through their own APIs and held against the README's IAM table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use clap::Parser;
use serde_json::Value;

use crate::support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A YAML node as JSON (every scalar a string), for indexing with `[..]`.
fn json(node: &marked_yaml::Node) -> Value {
    match node {
        marked_yaml::Node::Scalar(s) => Value::String(s.as_str().to_string()),
        marked_yaml::Node::Sequence(s) => Value::Array(s.iter().map(json).collect()),
        marked_yaml::Node::Mapping(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.as_str().to_string(), json(v))).collect())
        }
    }
}

/// Every document of a YAML file (separated by `---` lines).
fn documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().expect("a document");
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| json(&marked_yaml::parse_yaml(0, d).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))))
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("a string, not {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list, not {v}"))
        .iter()
        .map(|s| text(s).to_string())
        .collect()
}

/// `gameday ARGS` is a valid command line that runs `run-due` against an S3
/// runs store; returns the store's URL.
fn runs_due_against_s3(what: &str, args: &[String]) -> String {
    let line: Vec<String> = std::iter::once("gameday".to_string())
        .chain(args.iter().cloned())
        .collect();
    if let Err(e) = gameday::cli::Cli::try_parse_from(&line) {
        panic!(
            "{what}: `{}` is not a valid gameday command line: {e}",
            line.join(" ")
        );
    }
    assert_eq!(
        args.first().map(String::as_str),
        Some("run-due"),
        "{what}: {args:?}"
    );
    let runs = args
        .iter()
        .position(|a| a == "--runs-dir" || a == "--runs")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{what}: no --runs in {args:?}"));
    assert!(
        runs.starts_with("s3://"),
        "{what}: the runs store is in S3: {runs}"
    );
    runs.clone()
}

/// The Dockerfile's instructions, `\`-continued lines joined, comments dropped,
/// as (keyword, rest), grouped by stage.
fn stages() -> Vec<Vec<(String, String)>> {
    let text = read("Dockerfile");
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let instruction = std::mem::take(&mut current);
        let (keyword, rest) = instruction.split_once(' ').unwrap_or((&instruction, ""));
        let keyword = keyword.to_uppercase();
        if keyword == "FROM" {
            out.push(Vec::new());
        }
        out.last_mut()
            .expect("the Dockerfile starts with FROM")
            .push((keyword, rest.trim().to_string()));
    }
    out
}

/// The image: a build stage on the crate's own Rust release building only
/// `gameday`, `--locked`; a final stage on distroless (no shell) that holds
/// the binary and nothing else, runs as an unprivileged numeric user, and
/// whose entry point is gameday.
#[test]
fn the_container_image_holds_the_binary_alone_and_runs_it_unprivileged() {
    let stages = stages();
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    let image_of = |stage: &[(String, String)]| -> String {
        let from = &stage[0].1;
        from.split_whitespace().next().expect("FROM IMAGE").to_string()
    };
    for stage in &stages {
        let image = image_of(stage);
        let (name, tag) = image
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or_else(|| panic!("`{image}` names a tag"));
        assert_ne!(tag, "latest", "`{image}` is pinned to a release, not latest");
        assert!(
            image.contains("bookworm") || name.ends_with("debian12"),
            "`{image}` names its Debian release (bookworm, 12)"
        );
    }

    // The build stage: the Rust release Cargo.toml asks for; the one binary, locked.
    let build = &stages[0];
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("Cargo.toml's rust-version");
    assert!(
        image_of(build).starts_with(&format!("rust:{rust_version}-")),
        "the builder is Rust {rust_version}: {}",
        image_of(build)
    );
    let cargo = build
        .iter()
        .find(|(k, rest)| k == "RUN" && rest.contains("cargo build"))
        .map(|(_, rest)| rest.clone())
        .expect("a RUN cargo build");
    for flag in ["--release", "--locked", "--bin gameday"] {
        assert!(cargo.contains(flag), "cargo build {flag}: {cargo}");
    }

    // The final stage.
    let last = stages.last().expect("a final stage");
    let base = image_of(last);
    assert!(
        base.starts_with("gcr.io/distroless/") && !base.contains("debug"),
        "a runtime image without a shell: {base}"
    );
    let of = |keyword: &str| -> Vec<&String> {
        last.iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest)
            .collect()
    };
    assert!(
        of("RUN").is_empty(),
        "nothing runs in the final stage (it has no shell)"
    );
    assert!(of("ADD").is_empty(), "nothing fetched into the final stage");
    let copies = of("COPY");
    assert_eq!(copies.len(), 1, "the final stage copies one thing: {copies:?}");
    let words: Vec<&str> = copies[0].split_whitespace().collect();
    assert!(words[0].starts_with("--from="), "{copies:?}");
    assert!(
        words.len() == 3 && words[1].ends_with("/gameday") && words[2] == "/usr/local/bin/gameday",
        "the binary alone: {copies:?}"
    );
    let user = of("USER");
    let user = user.last().expect("a USER in the final stage");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("a numeric user (Kubernetes checks runAsNonRoot by number): {user}"));
    assert_ne!(uid, 0, "not root");
    let entrypoint = of("ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint.last().expect("an ENTRYPOINT"))
        .expect("ENTRYPOINT in exec form (no shell to run it)");
    assert_eq!(entrypoint, ["/usr/local/bin/gameday"]);

    // The build context: not the build output, the venv or the history; but
    // the policy the binary embeds (include_str!) and the targets Cargo.toml declares.
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for must in ["target", ".venv", ".git"] {
        assert!(
            ignored.iter().any(|i| i == must),
            ".dockerignore leaves out {must}/"
        );
    }
    for needed in ["src", "safety", "Cargo.toml", "Cargo.lock", "tests", "benches"] {
        assert!(
            !ignored.iter().any(|i| i == needed),
            ".dockerignore keeps {needed}"
        );
    }
}

/// The CronJob: every document parses; the pod runs as the image's user
/// with a read-only root and an emptyDir scratch, under a service account
/// with an IAM role, `run-due` against the S3 store, never two at once.
#[test]
fn the_kubernetes_cronjob_runs_run_due_unprivileged_against_the_s3_store() {
    let docs = documents("deploy/kubernetes/cronjob.yaml");
    let kind = |k: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("a {k} in deploy/kubernetes/cronjob.yaml"))
    };
    for d in &docs {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string() && d["metadata"]["name"].is_string(),
            "{d}"
        );
    }

    let account = kind("ServiceAccount");
    let role = text(&account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]);
    let role_name = role
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.split_once(":role/"))
        .filter(|(acct, name)| {
            acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        });
    assert!(role_name.is_some(), "an IAM role ARN: {role}");

    let job = kind("CronJob");
    assert_eq!(job["apiVersion"], "batch/v1");
    let spec = &job["spec"];
    let schedule = text(&spec["schedule"]);
    gameday::schedule::parse_cron(schedule).unwrap_or_else(|e| panic!("CronJob schedule `{schedule}`: {e}"));
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    let deadline: u32 = text(&spec["startingDeadlineSeconds"]).parse().expect("seconds");
    assert!(deadline > 0);
    assert_eq!(
        spec["jobTemplate"]["spec"]["backoffLimit"], "0",
        "a claimed slot is not retried"
    );

    let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    let grace: u32 = text(&pod["terminationGracePeriodSeconds"])
        .parse()
        .expect("seconds");
    assert!(grace >= 300, "time to roll back after SIGTERM: {grace}s");
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], "true");
    let image_user = stages()
        .last()
        .and_then(|s| s.iter().rev().find(|(k, _)| k == "USER").map(|(_, u)| u.clone()))
        .expect("the image's USER");
    assert_eq!(
        format!(
            "{}:{}",
            text(&pod_security["runAsUser"]),
            text(&pod_security["runAsGroup"])
        ),
        image_user,
        "the pod runs as the image's user"
    );

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert!(
        container["command"].is_null(),
        "the image's ENTRYPOINT (gameday) runs"
    );
    let args = strings(&container["args"]);
    runs_due_against_s3("the CronJob", &args);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], "true");
    assert_eq!(security["allowPrivilegeEscalation"], "false");
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // Every mount is a volume of the pod; the only writable ones are emptyDirs
    // (the scratch copy under /tmp); the folders the arguments name are mounted.
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (text(&v["name"]), v))
        .collect();
    let mut mounted = Vec::new();
    for m in container["volumeMounts"].as_array().expect("volumeMounts") {
        let volume = volumes
            .get(text(&m["name"]))
            .unwrap_or_else(|| panic!("a volume for {m}"));
        let path = text(&m["mountPath"]).to_string();
        if m["readOnly"] != "true" {
            assert!(volume["emptyDir"].is_object(), "a writable mount is scratch: {m}");
        }
        mounted.push(path);
    }
    assert!(
        mounted.iter().any(|m| m == "/tmp"),
        "scratch at /tmp: {mounted:?}"
    );
    for a in args.iter().filter(|a| a.starts_with('/')) {
        assert!(
            mounted.iter().any(|m| Path::new(a).starts_with(m)),
            "`{a}` is on a mounted volume: {mounted:?}"
        );
    }
}

/// The `service:Action`s in backticks in the actions column of the README's
/// "IAM permissions per feature" table: what gameday's role must be granted,
/// and no more.
fn readme_iam_actions() -> BTreeSet<String> {
    let readme = read("README.md");
    let section = readme
        .split("### IAM permissions per feature")
        .nth(1)
        .expect("README: ### IAM permissions per feature");
    let table = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let mut actions = BTreeSet::new();
    for row in table.skip(2) {
        // | feature | used by | actions | resources |
        let column = row
            .split('|')
            .nth(3)
            .unwrap_or_else(|| panic!("an actions column: {row}"));
        for (i, quoted) in column.split('`').enumerate() {
            let is_action = i % 2 == 1
                && quoted.split_once(':').is_some_and(|(service, action)| {
                    !service.is_empty()
                        && service
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
                        && action.bytes().all(|b| b.is_ascii_alphanumeric())
                        && action.starts_with(|c: char| c.is_ascii_uppercase())
                });
            if is_action {
                actions.insert(quoted.to_string());
            }
        }
    }
    actions
}

/// A policy document as IAM returns it (URL-encoded JSON).
fn policy_document(encoded: &str) -> Value {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = encoded
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("a policy document: {e}: {encoded}"))
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// Every inline policy of a role: name -> its statements.
async fn role_policies(iam: &aws_sdk_iam::Client, role: &str) -> BTreeMap<String, Vec<Value>> {
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .expect("ListRolePolicies")
        .policy_names;
    let mut out = BTreeMap::new();
    for name in names {
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(&name)
            .send()
            .await
            .expect("GetRolePolicy")
            .policy_document;
        out.insert(name, as_list(&policy_document(&doc)["Statement"]));
    }
    out
}

/// The template deployed into moto with every optional feature on: the task
/// role grants exactly the README's IAM table, scoped to the runs store, the
/// lease table, the topic, the bus, the halt parameter and the roles; the
/// task runs `run-due` against the store, unprivileged, read-only; the
/// trigger starts that task on that cluster and may pass only its two roles.
/// Deleting the stack removes them.
#[tokio::test]
async fn the_cloudformation_template_deploys_the_scheduled_task_with_the_readme_permissions() {
    let config = test_config(REGION).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let ecs = aws_sdk_ecs::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);

    let stack = unique("gameday-deploy");
    let account = "123456789012";
    let topic = format!("arn:aws:sns:{REGION}:{account}:gameday-notices");
    let bus = format!("arn:aws:events:{REGION}:{account}:event-bus/gameday");
    let assume = "arn:aws:iam::*:role/gameday-target".to_string();
    let instance_role = format!("arn:aws:iam::{account}:role/web-instances");
    let parameters = [
        (
            "Image",
            "111122223333.dkr.ecr.us-east-1.amazonaws.com/gameday-team-web:1",
        ),
        ("Subnets", "subnet-0a1b2c3d,subnet-4e5f6a7b"),
        ("SecurityGroups", "sg-0a1b2c3d"),
        ("RunsBucket", "acme-gameday"),
        ("RunsPrefix", "team-web"),
        ("LeaseTable", "gameday-leases"),
        // moto's CloudFormation cannot create an AWS::Scheduler::Schedule.
        ("Trigger", "events-rule"),
        ("NotificationTopicArn", topic.as_str()),
        ("EventBusArn", bus.as_str()),
        ("HaltParameter", "/gameday/halt"),
        ("AssumeRoleArn", assume.as_str()),
        ("InstanceRoleArn", instance_role.as_str()),
    ];
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(read("deploy/cloudformation/gameday-scheduler.yaml"))
        .capabilities(Capability::CapabilityIam)
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(k, v)| Parameter::builder().parameter_key(*k).parameter_value(*v).build())
                .collect(),
        ))
        .send()
        .await
        .expect("CreateStack");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = cfn
            .describe_stacks()
            .stack_name(&stack)
            .send()
            .await
            .expect("DescribeStacks")
            .stacks()
            .first()
            .and_then(|s| s.stack_status().cloned())
            .expect("a stack status");
        match status {
            StackStatus::CreateComplete => break,
            StackStatus::CreateInProgress if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => {
                let events = cfn.describe_stack_events().stack_name(&stack).send().await;
                panic!("stack {stack}: {other:?}: {events:#?}");
            }
        }
    }
    let resources: BTreeMap<String, String> = cfn
        .list_stack_resources()
        .stack_name(&stack)
        .send()
        .await
        .expect("ListStackResources")
        .stack_resource_summaries()
        .iter()
        .map(|r| {
            (
                r.logical_resource_id().unwrap_or_default().to_string(),
                r.physical_resource_id().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let physical = |logical: &str| -> &str {
        resources
            .get(logical)
            .unwrap_or_else(|| panic!("{logical} created: {resources:?}"))
    };
    assert!(
        !resources.contains_key("Schedule"),
        "Trigger=events-rule: no schedule"
    );

    // The task role: exactly the README's actions, each feature scoped.
    let task_role = physical("TaskRole");
    let policies = role_policies(&iam, task_role).await;
    let granted: BTreeSet<String> = policies
        .values()
        .flatten()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| as_list(&s["Action"]))
        .map(|a| text(&a).to_string())
        .collect();
    let documented = readme_iam_actions();
    assert!(
        documented.len() > 40,
        "the README's table lists gameday's actions: {documented:?}"
    );
    assert_eq!(
        granted.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "granted by the template, missing from the README's table"
    );
    assert_eq!(
        documented.difference(&granted).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the README's table, not granted by the template"
    );
    let resources_of = |action: &str| -> Vec<String> {
        policies
            .values()
            .flatten()
            .filter(|s| as_list(&s["Action"]).iter().any(|a| a == action))
            .flat_map(|s| as_list(&s["Resource"]))
            .map(|r| text(&r).to_string())
            .collect()
    };
    assert_eq!(
        resources_of("s3:PutObject"),
        ["arn:aws:s3:::acme-gameday/team-web/*"]
    );
    assert_eq!(
        resources_of("s3:GetObject"),
        ["arn:aws:s3:::acme-gameday/team-web/*"]
    );
    assert_eq!(resources_of("s3:ListBucket"), ["arn:aws:s3:::acme-gameday"]);
    let table = format!("arn:aws:dynamodb:{REGION}:{account}:table/gameday-leases");
    for action in [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
    ] {
        assert_eq!(resources_of(action), [table.as_str()], "{action}");
    }
    assert_eq!(resources_of("sns:Publish"), [topic.as_str()]);
    assert_eq!(resources_of("events:PutEvents"), [bus.as_str()]);
    assert_eq!(
        resources_of("ssm:GetParameter"),
        [format!("arn:aws:ssm:{REGION}:{account}:parameter/gameday/halt")]
    );
    assert_eq!(resources_of("sts:AssumeRole"), [assume.as_str()]);
    assert_eq!(resources_of("iam:PassRole"), [instance_role.as_str()]);

    // The task definition: run-due against the store, as the image's user, read-only but /tmp.
    let task_definition = physical("TaskDefinition");
    let described = ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .expect("DescribeTaskDefinition");
    let containers = described
        .task_definition()
        .expect("a task definition")
        .container_definitions();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let command: Vec<String> = container.command().to_vec();
    assert_eq!(
        runs_due_against_s3("the ECS task", &command),
        "s3://acme-gameday/team-web"
    );
    assert_eq!(container.readonly_root_filesystem(), Some(true));
    assert_eq!(container.user(), Some("65532:65532"));
    assert_eq!(
        container.stop_timeout(),
        Some(120),
        "Fargate's longest time to roll back"
    );
    let mounts: Vec<&str> = container
        .mount_points()
        .iter()
        .filter_map(|m| m.container_path())
        .collect();
    assert_eq!(mounts, ["/tmp"]);
    let logs = container.log_configuration().expect("logs");
    assert_eq!(
        logs.options()
            .and_then(|o| o.get("awslogs-group"))
            .map(String::as_str),
        Some(physical("LogGroup"))
    );

    // The trigger: this task on this cluster, with the trigger's role.
    let rule = physical("Rule");
    let targets = events
        .list_targets_by_rule()
        .rule(rule)
        .send()
        .await
        .expect("ListTargetsByRule");
    let targets = targets.targets();
    assert_eq!(targets.len(), 1);
    let clusters = ecs
        .describe_clusters()
        .clusters(physical("Cluster"))
        .send()
        .await
        .expect("DescribeClusters");
    let cluster_arn = clusters
        .clusters()
        .first()
        .and_then(|c| c.cluster_arn())
        .expect("the cluster");
    assert_eq!(targets[0].arn(), cluster_arn);
    let ecs_target = targets[0].ecs_parameters().expect("EcsParameters");
    assert_eq!(ecs_target.task_definition_arn(), task_definition);
    assert_eq!(ecs_target.task_count(), Some(1));
    assert_eq!(ecs_target.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let trigger_role = physical("TriggerRole");
    let trigger_role_arn = iam
        .get_role()
        .role_name(trigger_role)
        .send()
        .await
        .expect("GetRole")
        .role
        .map(|r| r.arn)
        .expect("the role");
    assert_eq!(targets[0].role_arn(), Some(trigger_role_arn.as_str()));
    let trigger = role_policies(&iam, trigger_role).await;
    let statements: Vec<&Value> = trigger.values().flatten().collect();
    let run_task: Vec<&&Value> = statements
        .iter()
        .filter(|s| s["Action"] == "ecs:RunTask")
        .collect();
    assert_eq!(run_task.len(), 1);
    assert_eq!(as_list(&run_task[0]["Resource"]), [Value::from(task_definition)]);
    let pass: Vec<String> = statements
        .iter()
        .filter(|s| s["Action"] == "iam:PassRole")
        .flat_map(|s| as_list(&s["Resource"]))
        .map(|r| text(&r).rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        pass.iter().collect::<BTreeSet<_>>(),
        [physical("ExecutionRole").to_string(), task_role.to_string()]
            .iter()
            .collect::<BTreeSet<_>>(),
        "the trigger passes the task's two roles, no other"
    );

    // Deleting the stack removes what it made.
    cfn.delete_stack()
        .stack_name(&stack)
        .send()
        .await
        .expect("DeleteStack");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let gone = iam.get_role().role_name(task_role).send().await.is_err()
            && events.describe_rule().name(rule).send().await.is_err();
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stack {stack} deleted: its role and rule are gone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
