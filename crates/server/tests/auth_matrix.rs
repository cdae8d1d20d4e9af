//! Every route, trust and registry, as every kind of client: no token, an anonymous token,
//! a user of another repository, a pull-only user, a push user and an admin. Each request
//! is made with a token for exactly what the route needs (as a client asks for it); a
//! refused one must get the right status, error code and challenge, and leave the data
//! directory exactly as it was.

#![allow(clippy::unwrap_used)]

use notarium_testkit::auth::{AuthServer, Snapshot, Who};
use notarium_testkit::oci::{self, Image};
use notarium_testkit::server::Endpoint;
use notarium_testkit::TestRepo;
use registry::Digest;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Trust,
    Registry,
}

/// One request to make.
struct Req {
    method: &'static str,
    path: String,
    body: Option<(String, Vec<u8>)>,
}

fn req(method: &'static str, path: String) -> Req {
    Req {
        method,
        path,
        body: None,
    }
}

/// The same request every time.
fn fixed(method: &'static str, path: String) -> Box<dyn FnMut(&World) -> Req> {
    Box::new(move |_| req(method, path.clone()))
}

/// A route of the matrix: how to build its request (fresh for every client: an upload
/// session, a valid update), the scope it needs, who may, and what success looks like.
struct Case {
    name: &'static str,
    api: Api,
    scope: String,
    allowed: &'static [Who],
    ok: u16,
    make: Box<dyn FnMut(&World) -> Req>,
}

struct World {
    srv: AuthServer,
    admin: Endpoint,
    gun: String,
    image: Image,
}

const WRITERS: &[Who] = &[Who::Pusher, Who::Admin];
const READERS: &[Who] = &[Who::Reader, Who::Pusher, Who::Admin];
const ADMIN: &[Who] = &[Who::Admin];
const ANY_TOKEN: &[Who] = &[
    Who::Anonymous,
    Who::Stranger,
    Who::Reader,
    Who::Pusher,
    Who::Admin,
];

fn send(e: &Endpoint, r: &Req) -> reqwest::blocking::Response {
    let m = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
    let mut rb = e.client().request(m, format!("{}{}", e.url, r.path));
    if let Some((ct, body)) = &r.body {
        rb = rb.header("content-type", ct).body(body.clone());
    }
    rb.send().unwrap()
}

/// An admin's upload session in `team/app`, for one request.
fn session(w: &World) -> String {
    let r = w
        .admin
        .client()
        .post(format!("{}/v2/team/app/blobs/uploads/", w.admin.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[test]
fn every_route_for_every_client() {
    let srv = AuthServer::start();
    let host = srv.host();
    let gun = format!("{host}/team/app");
    let everything = [
        format!("repository:{gun}:*"),
        format!("repository:{host}/team/doomed:*"),
        "repository:team/app:*".to_owned(),
        "registry:catalog:*".to_owned(),
    ];
    let scopes: Vec<&str> = everything.iter().map(String::as_str).collect();
    let admin = srv.as_user(Who::Admin, &scopes);

    // What there is to read: trust data for two repositories, an image in team/app.
    let repo = TestRepo::new(&admin, &gun);
    repo.publish_init(&admin);
    let doomed = TestRepo::new(&admin, &format!("{host}/team/doomed"));
    doomed.publish_init(&admin);
    let image = Image::new("matrix", "amd64", 0);
    oci::push(&admin.client(), &admin.url, "team/app", "v1", &image);
    let ts: serde_json::Value = admin.get_file(&gun, "timestamp.json").json();
    let snap_sha = hex::encode(base64_decode(
        ts["signed"]["meta"]["snapshot"]["hashes"]["sha256"]
            .as_str()
            .unwrap(),
    ));

    let w = World {
        srv,
        admin,
        gun: gun.clone(),
        image,
    };
    let t = |file: &str| format!("/v2/{gun}/_trust/tuf/{file}");
    let pull = format!("repository:{gun}:pull");
    let push_pull = format!("repository:{gun}:pull,push");
    let cfg = w.image.config.digest.to_string();
    let man = w.image.digest.to_string();
    let mut update_repo = repo;

    let mut cases: Vec<Case> = vec![
        // Trust reads: pull.
        Case {
            name: "GET root.json",
            api: Api::Trust,
            scope: pull.clone(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", t("root.json")),
        },
        Case {
            name: "GET timestamp.json",
            api: Api::Trust,
            scope: pull.clone(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", t("timestamp.json")),
        },
        Case {
            name: "GET snapshot.<sha256>.json",
            api: Api::Trust,
            scope: pull.clone(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", t(&format!("snapshot.{snap_sha}.json"))),
        },
        Case {
            name: "GET 1.root.json",
            api: Api::Trust,
            scope: pull.clone(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", t("1.root.json")),
        },
        Case {
            name: "GET changefeed of a repository",
            api: Api::Trust,
            scope: pull.clone(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", format!("/v2/{gun}/_trust/changefeed?records=10")),
        },
        // Keys: push and pull; a new repository's key is made on this read, so a refused
        // read must not make one.
        Case {
            name: "GET timestamp.key of a new repository",
            api: Api::Trust,
            scope: format!("repository:{host}/team/new:pull,push"),
            allowed: WRITERS,
            ok: 200,
            make: fixed(
                "GET",
                format!("/v2/{host}/team/new/_trust/tuf/timestamp.key"),
            ),
        },
        Case {
            name: "POST update",
            api: Api::Trust,
            scope: push_pull.clone(),
            allowed: WRITERS,
            ok: 200,
            make: Box::new(move |w| {
                let n = update_repo.targets.signed().version + 1;
                let body = update_repo.edit_targets(|t| {
                    tuf::edit::add_target(
                        t,
                        tuf::TargetName::new(&format!("v{n}")).unwrap(),
                        tuf::edit::docker_target(notarium_testkit::repo::digest("x"), 1),
                    )
                    .unwrap();
                });
                let (ct, body) = notarium_testkit::server::multipart(&[("targets", &body)]);
                Req {
                    method: "POST",
                    path: format!("/v2/{}/_trust/tuf/", w.gun),
                    body: Some((ct, body)),
                }
            }),
        },
        // Admin only: the global changefeed, key rotation, deleting a repository.
        Case {
            name: "GET the global changefeed",
            api: Api::Trust,
            scope: "registry:catalog:*".into(),
            allowed: ADMIN,
            ok: 200,
            make: fixed("GET", "/v2/_trust/changefeed?records=10".into()),
        },
        Case {
            name: "POST snapshot.key (rotate)",
            api: Api::Trust,
            scope: format!("repository:{host}/team/rotated:*"),
            allowed: ADMIN,
            ok: 200,
            make: fixed(
                "POST",
                format!("/v2/{host}/team/rotated/_trust/tuf/snapshot.key"),
            ),
        },
        Case {
            name: "DELETE a repository's trust data",
            api: Api::Trust,
            scope: format!("repository:{host}/team/doomed:*"),
            allowed: ADMIN,
            ok: 200,
            make: fixed("DELETE", format!("/v2/{host}/team/doomed/_trust/tuf/")),
        },
        // The ping: any valid token.
        Case {
            name: "GET /v2/",
            api: Api::Registry,
            scope: String::new(),
            allowed: ANY_TOKEN,
            ok: 200,
            make: fixed("GET", "/v2/".into()),
        },
        // Registry reads: pull.
        Case {
            name: "GET manifest by tag",
            api: Api::Registry,
            scope: "repository:team/app:pull".into(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", "/v2/team/app/manifests/v1".into()),
        },
        Case {
            name: "HEAD manifest by digest",
            api: Api::Registry,
            scope: "repository:team/app:pull".into(),
            allowed: READERS,
            ok: 200,
            make: fixed("HEAD", format!("/v2/team/app/manifests/{man}")),
        },
        Case {
            name: "GET blob",
            api: Api::Registry,
            scope: "repository:team/app:pull".into(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", format!("/v2/team/app/blobs/{cfg}")),
        },
        Case {
            name: "HEAD blob",
            api: Api::Registry,
            scope: "repository:team/app:pull".into(),
            allowed: READERS,
            ok: 200,
            make: fixed("HEAD", format!("/v2/team/app/blobs/{cfg}")),
        },
        Case {
            name: "GET tags/list",
            api: Api::Registry,
            scope: "repository:team/app:pull".into(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", "/v2/team/app/tags/list".into()),
        },
        Case {
            name: "GET referrers",
            api: Api::Registry,
            scope: "repository:team/app:pull".into(),
            allowed: READERS,
            ok: 200,
            make: fixed("GET", format!("/v2/team/app/referrers/{man}")),
        },
        Case {
            name: "GET _catalog",
            api: Api::Registry,
            scope: "registry:catalog:*".into(),
            allowed: ADMIN,
            ok: 200,
            make: fixed("GET", "/v2/_catalog".into()),
        },
        // Uploads and manifests: push.
        Case {
            name: "POST blobs/uploads/ (start)",
            api: Api::Registry,
            scope: "repository:team/app:push".into(),
            allowed: WRITERS,
            ok: 202,
            make: fixed("POST", "/v2/team/app/blobs/uploads/".into()),
        },
        Case {
            name: "POST blobs/uploads/?digest= (monolithic)",
            api: Api::Registry,
            scope: "repository:team/app:push".into(),
            allowed: WRITERS,
            ok: 201,
            make: Box::new({
                let mut n = 0;
                move |_| {
                    n += 1;
                    let data = format!("monolithic blob {n}").into_bytes();
                    Req {
                        method: "POST",
                        path: format!(
                            "/v2/team/app/blobs/uploads/?digest={}",
                            Digest::sha256_of(&data)
                        ),
                        body: Some(("application/octet-stream".into(), data)),
                    }
                }
            }),
        },
        Case {
            name: "PATCH an upload",
            api: Api::Registry,
            scope: "repository:team/app:push".into(),
            allowed: WRITERS,
            ok: 202,
            make: Box::new(|w| Req {
                method: "PATCH",
                path: session(w),
                body: Some(("application/octet-stream".into(), b"chunk".to_vec())),
            }),
        },
        Case {
            name: "PUT an upload (complete)",
            api: Api::Registry,
            scope: "repository:team/app:push".into(),
            allowed: WRITERS,
            ok: 201,
            make: Box::new(|w| {
                let data = b"completed blob".to_vec();
                Req {
                    method: "PUT",
                    path: format!("{}?digest={}", session(w), Digest::sha256_of(&data)),
                    body: Some(("application/octet-stream".into(), data)),
                }
            }),
        },
        Case {
            name: "GET an upload's status",
            api: Api::Registry,
            scope: "repository:team/app:push".into(),
            allowed: WRITERS,
            ok: 204,
            make: Box::new(|w| req("GET", session(w))),
        },
        Case {
            name: "DELETE an upload",
            api: Api::Registry,
            scope: "repository:team/app:push".into(),
            allowed: WRITERS,
            ok: 204,
            make: Box::new(|w| req("DELETE", session(w))),
        },
        Case {
            name: "PUT manifest",
            api: Api::Registry,
            scope: "repository:team/app:push".into(),
            allowed: WRITERS,
            ok: 201,
            make: Box::new(|w| Req {
                method: "PUT",
                path: "/v2/team/app/manifests/v2".into(),
                body: Some((
                    registry::manifest::OCI_MANIFEST.into(),
                    w.image.manifest.clone(),
                )),
            }),
        },
        // Deletes: delete.
        Case {
            name: "DELETE manifest",
            api: Api::Registry,
            scope: "repository:team/app:delete".into(),
            allowed: ADMIN,
            ok: 202,
            make: fixed("DELETE", "/v2/team/app/manifests/v2".into()),
        },
        Case {
            name: "DELETE blob",
            api: Api::Registry,
            scope: "repository:team/app:delete".into(),
            allowed: ADMIN,
            ok: 202,
            make: fixed("DELETE", format!("/v2/team/app/blobs/{cfg}")),
        },
    ];

    let mut checked = 0;
    for case in &mut cases {
        for who in Who::ALL {
            let scopes: Vec<&str> = if case.scope.is_empty() {
                vec![]
            } else {
                vec![case.scope.as_str()]
            };
            let client = w.srv.as_user(who, &scopes);
            let r = (case.make)(&w);
            let before = Snapshot::take(&w.srv.data_dir);
            let resp = send(&client, &r);
            let status = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = resp.text().unwrap_or_default();
            let what = format!("{} as {who:?}: {status} {body}", case.name);
            if case.allowed.contains(&who) {
                assert_eq!(status, case.ok, "{what}");
                continue;
            }
            let after = Snapshot::take(&w.srv.data_dir);
            assert_eq!(before, after, "{what}: changed {:?}", before.diff(&after));
            let code = serde_json::from_str::<serde_json::Value>(&body)
                .map(|v| v["errors"][0]["code"].as_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            // A registry route tells a named user who may never do this 403; everyone
            // else (and every trust route, for Notary clients) gets 401 and a challenge.
            let denied = case.api == Api::Registry && who.credentials().is_some();
            if denied {
                assert_eq!(status, 403, "{what}");
                if r.method != "HEAD" {
                    assert_eq!(code, "DENIED", "{what}");
                }
                assert!(challenge.is_none(), "{what}");
                continue;
            }
            assert_eq!(status, 401, "{what}");
            if r.method != "HEAD" {
                assert_eq!(code, "UNAUTHORIZED", "{what}");
            }
            let c = challenge.unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
            assert!(
                c.starts_with(&format!(
                    "Bearer realm=\"https://{host}/auth/token\",service=\"notarium\""
                )),
                "{what}: {c}"
            );
            if !case.scope.is_empty() {
                let want = notarium_server_scope(&case.scope);
                assert!(c.contains(&format!("scope=\"{want}\"")), "{what}: {c}");
            }
            if who == Who::NoToken {
                assert!(!c.contains("error="), "{what}: {c}");
            } else {
                assert!(c.contains("error=\"insufficient_scope\""), "{what}: {c}");
            }
            checked += 1;
        }
    }
    eprintln!("checked {checked}");
    assert!(checked > 60, "only {checked} refusals checked");

    // Side effects of what was allowed, to show the checks above saw real requests: the
    // admin's rotation and deletion happened, and the pusher's updates are in the chain.
    let a = w.srv.as_user(
        Who::Admin,
        &[&format!("repository:{host}/team/doomed:pull")],
    );
    assert_eq!(
        a.get_file(&format!("{host}/team/doomed"), "root.json")
            .status,
        404
    );
    let r = w
        .srv
        .as_user(Who::Reader, &[&format!("repository:{gun}:pull")]);
    let targets: serde_json::Value = r.get_file(&gun, "targets.json").json();
    // One valid update was made for each of the six clients; the last two were taken.
    assert_eq!(targets["signed"]["version"], 7);
    assert_eq!(r.get_file(&gun, "6.targets.json").status, 200);
    assert_eq!(
        r.get_file(&gun, "5.targets.json").status,
        404,
        "a refused update left nothing"
    );
}

/// The scope the server names in its challenge: actions in docker's order.
fn notarium_server_scope(s: &str) -> String {
    let (head, actions) = s.rsplit_once(':').unwrap();
    let mut list: Vec<&str> = actions.split(',').collect();
    let order = |a: &&str| ["pull", "push", "delete", "*"].iter().position(|x| x == a);
    list.sort_by_key(order);
    format!("{head}:{}", list.join(","))
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn a_mount_needs_pull_on_its_source() {
    let srv = AuthServer::start();
    let admin = srv.as_user(
        Who::Admin,
        &[
            "repository:other/x:pull,push",
            "repository:team/app:pull,push",
        ],
    );
    let other = Image::new("mount-source", "amd64", 0);
    oci::push(&admin.client(), &admin.url, "other/x", "v1", &other);
    let d = other.config.digest.to_string();
    let mount = format!("/v2/team/app/blobs/uploads/?mount={d}&from=other/x");
    // The pusher may push team/app but not read other/x: no mount, a plain upload.
    let pusher = srv.as_user(
        Who::Pusher,
        &["repository:team/app:pull,push", "repository:other/x:pull"],
    );
    let r = send(&pusher, &req("POST", mount.clone()));
    assert_eq!(r.status(), 202, "an upload instead of a mount");
    let r = send(&pusher, &req("HEAD", format!("/v2/team/app/blobs/{d}")));
    assert_eq!(
        r.status(),
        404,
        "the blob of other/x is not linked into team/app"
    );
    // The admin may read the source: mounted.
    let r = send(&admin, &req("POST", mount));
    assert_eq!(r.status(), 201);
    let r = send(&admin, &req("HEAD", format!("/v2/team/app/blobs/{d}")));
    assert_eq!(r.status(), 200);
}

#[test]
fn gun_prefixes_are_a_rule_of_the_policy_layer() {
    let srv = AuthServer::start_with(notarium_testkit::server::Options {
        configure: Box::new(|c| c.gun_prefixes = vec!["allowed/".into()]),
        ..Default::default()
    });
    let gun = "elsewhere/app";
    let admin = srv.as_user(Who::Admin, &[&format!("repository:{gun}:*")]);
    let before = Snapshot::take(&srv.data_dir);
    let a = admin.post_parts(gun, &[("root", b"{}")]);
    assert_eq!((a.status, a.code().as_str()), (400, "INVALID_GUN"));
    let a = admin.get_file(gun, "timestamp.key");
    assert_eq!((a.status, a.code().as_str()), (404, "METADATA_NOT_FOUND"));
    assert_eq!(Snapshot::take(&srv.data_dir), before);
}
