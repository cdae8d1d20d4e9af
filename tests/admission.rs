//! Admission against real trust data: `notarium server` with `[admission]` answers
//! `/verify` and Kubernetes AdmissionReview v1 (validating and mutating) for images in its
//! own registry, signed with `notarium trust`: a signed image, an unsigned one, a tag
//! moved behind trust's back, an image signed by the wrong signer and one below its
//! policy's threshold; each answer's `uid`, `allowed`, `status` and JSONPatch asserted.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use base64::Engine as _;
use notarium_testkit::docker::Docker;
use notarium_testkit::oci::{self, Image};
use notarium_testkit::server::Options;
use notarium_testkit::TestServer;
use serde_json::{json, Value};
use trust_client::admission::policy::{AdmissionFile, RuleFile};

const BIN: &str = env!("CARGO_BIN_EXE_notarium");

fn ok(d: &Docker, args: &[&str]) {
    let r = d.run_program(Path::new(BIN), args, "");
    assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
}

/// `name` (key `<name>.pub` in `by`'s directory) made a signer of `repo` by `by`.
fn add_signer(by: &Docker, name: &str, repo: &str) {
    let key = format!("{name}.pub");
    ok(by, &["trust", "signer", "add", "--key", &key, name, repo]);
}

fn post(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let r = s
        .client()
        .post(format!("{}{path}", s.url))
        .json(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn pod(uid: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
        .collect();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": containers}},
        },
    })
}

fn patch_of(response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let b = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&b).unwrap()
}

#[test]
fn admission_answers_from_the_trust_data() {
    let tmp = tempfile::tempdir().unwrap();
    let adm_config = tmp.path().join("admission-config");
    let dc = adm_config.clone();
    let server = TestServer::start_with(Options {
        configure: Box::new(move |c| {
            let host = "127.0.0.1:*";
            let rule = |p: &str, signers: &[&str], threshold: Option<u64>, allow: bool| RuleFile {
                pattern: format!("{host}/{p}/**"),
                signers: signers.iter().map(|s| s.to_string()).collect(),
                threshold,
                allow,
                ..Default::default()
            };
            let mut lenient = rule("lenient", &[], None, false);
            lenient.on_error = Some(trust_client::admission::policy::OnError::Allow);
            let mut pinned = rule("pinned", &[], None, false);
            pinned.root_keys = vec!["ab".repeat(32)];
            let f = AdmissionFile {
                docker_config: Some(dc),
                fetch_timeout_secs: Some(1),
                max_images: Some(20),
                max_body_bytes: Some(64 << 10),
                policy: vec![
                    rule("strict", &["alice", "bob"], Some(2), false),
                    rule("bob-only", &["bob"], None, false),
                    rule("open", &[], None, true),
                    lenient,
                    pinned,
                ],
                ..Default::default()
            };
            c.admission = Some(server::config::Admission::from_file(&f).unwrap());
        }),
        ..Default::default()
    });
    // The admission's own docker configuration: it trusts the server's CA.
    server.install_ca_for_docker(&adm_config);
    let host = server.addr.to_string();
    let alice = server.user(tmp.path(), "alice");
    let bob = server.user(tmp.path(), "bob");
    ok(&bob, &["trust", "key", "generate", "bob", "--dir", "."]);
    std::fs::copy(bob.cwd.join("bob.pub"), alice.cwd.join("bob.pub")).unwrap();
    let push = |name: &str, tag: &str, seed: &str| {
        let image = Image::new(seed, "amd64", 64);
        oci::push(&server.client(), &server.url, name, tag, &image);
        image.digest.to_string()
    };

    // adm/app: v1 signed; "unsigned" pushed only; v2 signed, then moved.
    let v1 = push("adm/app", "v1", "v1");
    alice.sign_as(Path::new(BIN), "alice", &format!("{host}/adm/app"), "v1");
    push("adm/app", "unsigned", "unsigned");
    let v2 = push("adm/app", "v2", "v2");
    ok(&alice, &["trust", "sign", &format!("{host}/adm/app:v2")]);
    push("adm/app", "v2", "moved");
    // strict/app (alice and bob, 2 of them): "both" signed by both, "one" by alice only.
    let both = push("strict/app", "both", "both");
    push("strict/app", "one", "one");
    let strict = format!("{host}/strict/app");
    add_signer(&alice, "alice", &strict);
    add_signer(&alice, "bob", &strict);
    ok(&alice, &["trust", "sign", &format!("{strict}:both")]);
    ok(&alice, &["trust", "sign", &format!("{strict}:one")]);
    ok(&bob, &["trust", "sign", &format!("{strict}:both")]);
    // bob-only/app: signed by alice, the policy wants bob.
    push("bob-only/app", "v1", "bob-only");
    let bob_only = format!("{host}/bob-only/app");
    add_signer(&alice, "alice", &bob_only);
    ok(&alice, &["trust", "sign", &format!("{bob_only}:v1")]);

    let adm = |t: &str| format!("{host}/adm/app:{t}");
    // /verify, from memory after the first fetch.
    let ask = json!({"images": [adm("v1"), adm("unsigned"), format!("{strict}:both"),
        format!("{strict}:one"), format!("{bob_only}:v1"), format!("{host}/open/anything:x"),
        format!("{host}/never/seen:v1"), "Not A Reference"]});
    let (status, v) = post(&server, "/verify", &ask);
    assert_eq!(status, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(
        r[0],
        json!({"image": adm("v1"), "allowed": true, "digest": v1})
    );
    assert_eq!(
        r[1],
        json!({"image": adm("unsigned"), "allowed": false,
        "reason": "No valid trust data for unsigned"})
    );
    assert_eq!(r[2]["digest"], both.as_str());
    assert_eq!(
        r[3]["reason"],
        "one is signed by 1 of the required signers (alice, bob), the threshold is 2"
    );
    assert_eq!(
        r[4]["reason"],
        "v1 is not signed by a required signer (bob); signed by alice"
    );
    assert_eq!(r[5]["allowed"], true);
    assert!(r[5]["reason"]
        .as_str()
        .unwrap()
        .starts_with("allowed without a signature"));
    assert_eq!(r[6]["allowed"], false);
    assert!(
        r[6]["reason"].as_str().unwrap().contains("trust data"),
        "{}",
        r[6]
    );
    assert_eq!(r[7]["allowed"], false);
    // A trust server that never answers: the first fetch gives up after
    // fetch_timeout_secs, and the answer follows on_error (deny by default, allow where the
    // policy says so).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_host = silent.local_addr().unwrap().to_string();
    // (Connections are held open, never answered, until the test process ends.)
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let started = std::time::Instant::now();
    let (_, v) = post(
        &server,
        "/verify",
        &json!({"images": [
        format!("{silent_host}/slow/app:v1"), format!("{silent_host}/lenient/app:v1")]}),
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["allowed"], false, "{v}");
    assert!(
        r[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no answer from its trust server"),
        "{v}"
    );
    assert_eq!(r[1]["allowed"], true, "{v}");
    assert!(
        r[1]["reason"]
            .as_str()
            .unwrap()
            .ends_with("(on_error = allow)"),
        "{v}"
    );
    // A pinned root key the repository's root does not carry: refused.
    push("pinned/app", "v1", "pinned");
    let pinned = format!("{host}/pinned/app");
    add_signer(&alice, "alice", &pinned);
    ok(&alice, &["trust", "sign", &format!("{pinned}:v1")]);
    let (_, v) = post(
        &server,
        "/verify",
        &json!({"images": [format!("{host}/pinned/app:v1")]}),
    );
    let why = v["results"][0]["reason"].as_str().unwrap();
    assert!(why.contains("carries none of the root keys pinned"), "{v}");

    // /verify answers what the trust data says: the moved tag resolves to its signed digest.
    let (_, v) = post(&server, "/verify", &json!({"images": [adm("v2")]}));
    assert_eq!(v["results"][0]["digest"], v2.as_str());

    // Validating: one review per case.
    let validate = |uid: &str, images: &[&str]| {
        let (status, v) = post(&server, "/admission/validate", &pod(uid, images));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], uid);
        v["response"].clone()
    };
    let a = validate("uid-signed", &[&adm("v1")]);
    assert_eq!(a, json!({"uid": "uid-signed", "allowed": true}));
    for (uid, image, why) in [
        (
            "uid-unsigned",
            adm("unsigned"),
            "No valid trust data for unsigned".to_owned(),
        ),
        (
            "uid-moved",
            adm("v2"),
            "the tag was moved: the registry serves".to_owned(),
        ),
        (
            "uid-signer",
            format!("{bob_only}:v1"),
            "not signed by a required signer (bob); signed by alice".to_owned(),
        ),
        (
            "uid-threshold",
            format!("{strict}:one"),
            "the threshold is 2".to_owned(),
        ),
    ] {
        let a = validate(uid, &[&adm("v1"), &image]);
        assert_eq!(a["allowed"], false, "{uid}: {a}");
        assert_eq!(a["status"]["code"], 403, "{uid}");
        let msg = a["status"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("notarium: {image}: ")),
            "{uid}: {msg}"
        );
        assert!(msg.contains(&why), "{uid}: {msg}");
        assert!(a.get("patch").is_none(), "{uid}");
    }

    // Mutating: tags pinned to the signed digests (the moved one too: the node pulls
    // what was signed); refusals as in validating.
    let (status, v) = post(
        &server,
        "/admission/mutate",
        &pod(
            "uid-mutate",
            &[&adm("v1"), &adm("v2"), &format!("{strict}:both")],
        ),
    );
    assert_eq!(status, 200);
    let a = &v["response"];
    assert_eq!(
        (a["uid"].as_str(), a["allowed"].as_bool()),
        (Some("uid-mutate"), Some(true))
    );
    assert_eq!(
        patch_of(a),
        json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": format!("{host}/adm/app@{v1}")},
            {"op": "replace", "path": "/spec/containers/1/image", "value": format!("{host}/adm/app@{v2}")},
            {"op": "replace", "path": "/spec/containers/2/image", "value": format!("{strict}@{both}")},
        ])
    );
    for (uid, image) in [
        ("m-unsigned", adm("unsigned")),
        ("m-signer", format!("{bob_only}:v1")),
        ("m-threshold", format!("{strict}:one")),
    ] {
        let (_, v) = post(&server, "/admission/mutate", &pod(uid, &[&image]));
        let a = &v["response"];
        assert_eq!(
            (a["uid"].as_str(), a["allowed"].as_bool()),
            (Some(uid), Some(false)),
            "{a}"
        );
        assert_eq!(a["status"]["code"], 403);
        assert!(a.get("patchType").is_none());
    }
    // A Deployment: init and regular containers of its template.
    let mut d = pod("uid-deploy", &[]);
    d["request"]["kind"]["kind"] = json!("Deployment");
    d["request"]["object"] = json!({"spec": {"template": {"spec": {
        "initContainers": [{"name": "i", "image": adm("v1")}],
        "containers": [{"name": "c", "image": format!("{}@{v1}", adm("v1"))}]}}}});
    let (_, v) = post(&server, "/admission/mutate", &d);
    assert_eq!(
        patch_of(&v["response"]),
        json!([
            {"op": "replace", "path": "/spec/template/spec/initContainers/0/image", "value": format!("{host}/adm/app@{v1}")},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": format!("{host}/adm/app@{v1}")},
        ])
    );
    // Past the bounds ([admission] max_images, max_body_bytes): refused.
    let many: Vec<String> = (0..21).map(|i| format!("{host}/many{i}/app:v1")).collect();
    let (status, v) = post(&server, "/verify", &json!({ "images": many }));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "at most 20 images per request");
    let big = json!({"images": [format!("{host}/adm/app:v1")], "pad": "x".repeat(64 << 10)});
    let (status, v) = post(&server, "/verify", &big);
    assert_eq!(status, 413, "{v}");
    let (status, _) = post(&server, "/admission/validate", &big);
    assert_eq!(status, 413);
    // Not a review: 400.
    let (status, _) = post(&server, "/admission/validate", &json!({"kind": "Pod"}));
    assert_eq!(status, 400);
}

#[test]
fn without_admission_its_routes_are_not_there() {
    let server = TestServer::start();
    let (status, _) = post(&server, "/verify", &json!({"images": []}));
    assert_eq!(status, 404);
}

/// `notarium admission`: the same answers as its own process, over its own TLS (a CA
/// generated in its data directory), stopped by SIGTERM.
#[test]
fn the_admission_process_answers_on_its_own() {
    use std::io::BufRead as _;
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let host = server.addr.to_string();
    let alice = server.user(tmp.path(), "alice");
    let image = Image::new("alone", "amd64", 64);
    oci::push(&server.client(), &server.url, "alone/app", "v1", &image);
    alice.sign_as(Path::new(BIN), "alice", &format!("{host}/alone/app"), "v1");
    let trust = tmp.path().join("trust-config");
    server.install_ca_for_docker(&trust);
    let config = tmp.path().join("admission.toml");
    std::fs::write(
        &config,
        format!("[admission]\ndocker_config = \"{}\"\n", trust.display()),
    )
    .unwrap();
    let data = tmp.path().join("adm-data");
    let mut child = std::process::Command::new(BIN)
        .args(["admission", "--addr", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("NOTARIUM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.split_whitespace().nth(4).unwrap().to_owned();
    assert!(
        line.contains(&format!(
            "CA certificate: {}",
            data.join("tls/ca.crt").display()
        )),
        "{line}"
    );
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(data.join("tls/ca.crt")).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap();
    let ask = |path: &str, body: Value| -> Value {
        client
            .post(format!("{url}{path}"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let v = ask(
        "/verify",
        json!({"images": [format!("{host}/alone/app:v1"), format!("{host}/alone/app:v9")]}),
    );
    assert_eq!(v["results"][0]["digest"], image.digest.to_string());
    assert_eq!(v["results"][1]["reason"], "No valid trust data for v9");
    let v = ask(
        "/admission/validate",
        pod("uid-alone", &[&format!("{host}/alone/app:v1")]),
    );
    assert_eq!(v["response"], json!({"uid": "uid-alone", "allowed": true}));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
