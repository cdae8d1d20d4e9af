//! Kubernetes `AdmissionReview` v1: the images of a workload (every container, init and
//! ephemeral container of Pods, and of the pod templates of Deployments, ReplicaSets,
//! StatefulSets, DaemonSets, Jobs and CronJobs), and the answer: allowed or not (with the
//! reasons), and in mutating mode a JSONPatch that pins each image to its signed digest.

use base64::Engine as _;
use serde_json::{json, Value};

use super::Verdict;

/// Where a kind keeps its pod spec (a JSON pointer), `None` for kinds without one.
fn pod_spec(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" => "/spec",
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController"
        | "PodTemplate" => {
            if kind == "PodTemplate" {
                "/template/spec"
            } else {
                "/spec/template/spec"
            }
        }
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    })
}

/// Every image of `object` (of `kind`): (JSON pointer of its `image`, the image).
pub fn images(kind: &str, object: &Value) -> Vec<(String, String)> {
    let Some(spec_at) = pod_spec(kind) else {
        return Vec::new();
    };
    let Some(spec) = object.pointer(spec_at) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = spec.get(list).and_then(Value::as_array) {
            for (i, c) in cs.iter().enumerate() {
                if let Some(img) = c.get("image").and_then(Value::as_str) {
                    out.push((format!("{spec_at}/{list}/{i}/image"), img.to_owned()));
                }
            }
        }
    }
    out
}

/// The image as written, pinned: `repo:tag` or `repo:tag@sha256:…` → `repo@<digest>`.
pub fn pinned(image: &str, digest: &str) -> String {
    let no_digest = image.split_once('@').map_or(image, |(n, _)| n);
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let repo = match no_digest[slash..].rfind(':') {
        Some(colon) => &no_digest[..slash + colon],
        None => no_digest,
    };
    format!("{repo}@{digest}")
}

/// Why a review could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct BadReview(pub String);

/// Answer `review` (the request body). `decide` gives each image's verdict (in validating
/// mode it also checks that the registry still serves the signed digest for a tag).
pub fn answer(
    review: &[u8],
    mutate: bool,
    mut decide: impl FnMut(&str) -> Verdict,
) -> Result<Value, BadReview> {
    let v: Value = serde_json::from_slice(review)
        .map_err(|e| BadReview(format!("not an AdmissionReview: {e}")))?;
    if v["kind"] != "AdmissionReview" || v["apiVersion"] != "admission.k8s.io/v1" {
        return Err(BadReview(
            "expected kind AdmissionReview, apiVersion admission.k8s.io/v1".into(),
        ));
    }
    let req = &v["request"];
    let uid = req["uid"]
        .as_str()
        .ok_or_else(|| BadReview("request.uid is missing".into()))?;
    let kind = req["kind"]["kind"].as_str().unwrap_or("");
    let object = &req["object"];
    let mut denied = Vec::new();
    let mut patch = Vec::new();
    for (at, image) in images(kind, object) {
        let verdict = decide(&image);
        if !verdict.allowed {
            denied.push(format!(
                "{image}: {}",
                verdict.reason.as_deref().unwrap_or("refused")
            ));
            continue;
        }
        if let (true, Some(d)) = (mutate, &verdict.digest) {
            let to = pinned(&image, d);
            if to != image {
                patch.push(json!({"op": "replace", "path": at, "value": to}));
            }
        }
    }
    let mut response = json!({"uid": uid, "allowed": denied.is_empty()});
    if !denied.is_empty() {
        response["status"] = json!({
            "code": 403,
            "reason": "Forbidden",
            "message": format!("notarium: {}", denied.join("; ")),
        });
    } else if !patch.is_empty() {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&patch).unwrap_or_default()));
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_found_wherever_a_kind_keeps_its_containers() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "image": "r/init:1"}],
            "containers": [{"name": "a", "image": "r/a:1"}, {"name": "b", "image": "r/b:1"}],
            "ephemeralContainers": [{"name": "e", "image": "r/debug:1"}],
        }});
        let found = images("Pod", &pod);
        assert_eq!(
            found,
            [
                (
                    "/spec/initContainers/0/image".to_owned(),
                    "r/init:1".to_owned()
                ),
                ("/spec/containers/0/image".to_owned(), "r/a:1".to_owned()),
                ("/spec/containers/1/image".to_owned(), "r/b:1".to_owned()),
                (
                    "/spec/ephemeralContainers/0/image".to_owned(),
                    "r/debug:1".to_owned()
                ),
            ]
        );
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"image": "r/c:1"}]}}}}}});
        assert_eq!(
            images("CronJob", &cron)[0].0,
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        );
        for kind in [
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicaSet",
        ] {
            let d = json!({"spec": {"template": {"spec": {"containers": [{"image": "r/d:1"}]}}}});
            assert_eq!(images(kind, &d).len(), 1, "{kind}");
        }
        assert!(images("ConfigMap", &json!({"data": {}})).is_empty());
    }

    #[test]
    fn pinning_keeps_the_repository_as_written() {
        let d = "sha256:abc";
        assert_eq!(pinned("reg:5000/a/b:v1", d), "reg:5000/a/b@sha256:abc");
        assert_eq!(pinned("reg:5000/a/b", d), "reg:5000/a/b@sha256:abc");
        assert_eq!(pinned("nginx:1.25@sha256:old", d), "nginx@sha256:abc");
        assert_eq!(pinned("localhost:5000/x", d), "localhost:5000/x@sha256:abc");
    }
}
