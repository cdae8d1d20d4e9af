//! Registry benchmark (not a test): a 1 GiB blob pushed to and pulled from `notarium
//! server` (release binary, TLS) by `notarium push`/`pull`, with the server's resident
//! memory (VmRSS before, VmHWM after); the machine's SHA-256 speed for reference; and a
//! 512 MiB layer copied into and out of notarium server and the CNCF registry (Debian
//! `docker-registry`, plain HTTP) by skopeo and by `notarium push`/`pull`, with the
//! servers' peak memory so far (VmHWM), and skopeo's time for the same copy between two
//! directories.
//!
//! Run: `cargo bench --bench registry` (needs skopeo and docker-registry; ~22 GiB of
//! temporary disk). `BENCH_SIZE_MB=1024` and `BENCH_SKOPEO_MB=512` change the sizes.
//!
//! `BENCH_ONLY=s3`: the same `notarium push`/`pull` of one blob (`BENCH_SIZE_MB`, default
//! 512) with the blobs on the filesystem and in S3 (a single-node Garage on this machine,
//! started by the bench), and with two servers on one PostgreSQL database and one bucket
//! (pushed to one, pulled from the other).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use registry::digest::{Algorithm, Hasher};
use registry::manifest::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};

mod common;

use common::{memory, start_server};

const BIN: &str = env!("CARGO_BIN_EXE_notarium");

/// Write `mb` MiB of noise as one layer of an OCI layout in `dir` (tag `v1`); returns the
/// layer's digest.
fn big_layout(dir: &Path, mb: usize) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let tmp = dir.join("blobs/sha256/tmp");
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut block = [7u8; 32];
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for c in chunk.chunks_mut(32) {
            block = tuf::hash::sha256(&block);
            c.copy_from_slice(&block[..c.len()]);
        }
        h.update(&chunk);
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let layer = h.finish();
    std::fs::rename(&tmp, dir.join("blobs/sha256").join(layer.hex())).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = registry::Digest::sha256_of(config);
    std::fs::write(dir.join("blobs/sha256").join(cd.hex()), config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.to_string(), "size": mb << 20}],
    }))
    .unwrap();
    let md = registry::Digest::sha256_of(&manifest);
    std::fs::write(dir.join("blobs/sha256").join(md.hex()), &manifest).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
        }))
        .unwrap(),
    )
    .unwrap();
    layer.to_string()
}

fn run(cmd: &mut Command) -> f64 {
    // Start from a clean page cache: the previous step's gigabyte of writes is on disk.
    let _ = Command::new("sync").status();
    let t = Instant::now();
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn sha256_speed() -> f64 {
    let buf = vec![1u8; 64 << 20];
    let t = Instant::now();
    let mut h = Hasher::new(Algorithm::Sha256);
    for _ in 0..8 {
        h.update(&buf);
    }
    let _ = h.finish();
    (512.0 / 1024.0) / t.elapsed().as_secs_f64()
}

/// `BENCH_ONLY=s3`: push/pull throughput with the blobs on the filesystem and in S3.
fn s3_throughput() {
    let mb: usize = std::env::var("BENCH_SIZE_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let tmp = tempfile::tempdir().unwrap();
    let garage = notarium_testkit::garage::Garage::shared();
    let db = notarium_testkit::postgres::TestDb::create();
    let s3 = garage.s3_settings();
    let s3_config = |bucket: String, unsigned: bool| {
        let s3 = s3.clone();
        move |dir: &Path| {
            std::fs::write(
                dir.join("notarium.toml"),
                format!(
                    "[storage]\nblobs = \"{bucket}\"\n[storage.s3]\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nunsigned_payload = {unsigned}\n",
                    s3.endpoint.unwrap(),
                    s3.region.unwrap(),
                    s3.access_key_id.unwrap(),
                    s3.secret_access_key.unwrap()
                ),
            )
            .unwrap();
        }
    };
    let src = tmp.path().join("src");
    big_layout(&src, mb);
    let gb = mb as f64 / 1024.0 * 1.073_741_824;
    let docker_config = tmp.path().join("docker");
    let trust_ca = |server: &common::Server| {
        let host = server.url.trim_start_matches("https://").to_owned();
        std::fs::create_dir_all(docker_config.join("tls").join(&host)).unwrap();
        std::fs::copy(
            &server.ca,
            docker_config.join("tls").join(&host).join("ca.crt"),
        )
        .unwrap();
        host
    };
    let out = tmp.path().join("out");
    let cpu = |servers: &[&common::Server]| -> (f64, f64) {
        (
            {
                let mut pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
                pids.dedup();
                pids.into_iter().map(common::cpu_secs).sum()
            },
            common::cpu_secs(garage.pid),
        )
    };
    // Each step: its time, and the CPU seconds the notarium servers and Garage used in it.
    let push_pull = |to: &common::Server, from: &common::Server, repo: &str| {
        let (to_host, from_host) = (trust_ca(to), trust_ca(from));
        let step = |cmd: &mut Command| {
            let before = cpu(&[to, from]);
            let t = run(cmd);
            let after = cpu(&[to, from]);
            (t, after.0 - before.0, after.1 - before.1)
        };
        let push = step(
            Command::new(BIN)
                .args(["push", "--disable-content-trust"])
                .arg(&src)
                .arg(format!("{to_host}/{repo}:v1"))
                .env("DOCKER_CONFIG", &docker_config),
        );
        let pull = step(
            Command::new(BIN)
                .args(["pull", "--disable-content-trust"])
                .arg(format!("{from_host}/{repo}:v1"))
                .arg(&out)
                .env("DOCKER_CONFIG", &docker_config),
        );
        std::fs::remove_dir_all(&out).unwrap();
        let peak = memory(to.child.id()).1.max(memory(from.child.id()).1);
        (push, pull, peak)
    };
    println!("| {mb} MiB blob, notarium push then pull over TLS | push (CPU: servers, Garage) | pull (CPU: servers, Garage) | server peak RSS |");
    println!("|---|---:|---:|---:|");
    type Step = (f64, f64, f64);
    let row = |name: &str, ((p, pc, pg), (l, lc, lg), peak): (Step, Step, f64)| {
        println!(
            "| {name} | {p:.2} s, {:.2} GB/s ({pc:.2} s, {pg:.2} s) | {l:.2} s, {:.2} GB/s ({lc:.2} s, {lg:.2} s) | {peak:.1} MB |",
            gb / p,
            gb / l
        );
    };
    let fs = start_server();
    row(
        "filesystem (default), 1 server",
        push_pull(&fs, &fs, "bench/fs"),
    );
    drop(fs);
    let config = ["--config", "notarium.toml"];
    let one = common::start_server_with(&config, "warn", s3_config(garage.fresh_url(), false));
    row(
        "S3 (Garage), 1 server, payloads signed (plain HTTP's default)",
        push_pull(&one, &one, "bench/s3"),
    );
    drop(one);
    let one = common::start_server_with(&config, "warn", s3_config(garage.fresh_url(), true));
    row(
        "S3 (Garage), 1 server, payloads unsigned (HTTPS's default)",
        push_pull(&one, &one, "bench/s3u"),
    );
    drop(one);
    let bucket = garage.fresh_url();
    let url = db.url();
    let args = ["--config", "notarium.toml", "--database", &url];
    let a = common::start_server_with(&args, "warn", s3_config(bucket.clone(), true));
    let b = common::start_server_with(&args, "warn", s3_config(bucket, true));
    row(
        "S3 (Garage, unsigned) + PostgreSQL, 2 servers: pushed to one, pulled from the other",
        push_pull(&a, &b, "bench/two"),
    );
    drop((a, b, db));
}

fn main() {
    if std::env::var("BENCH_ONLY").as_deref() == Ok("s3") {
        return s3_throughput();
    }
    let mb: usize = std::env::var("BENCH_SIZE_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let skopeo_mb: usize = std::env::var("BENCH_SKOPEO_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let tmp = tempfile::tempdir().unwrap();
    println!(
        "SHA-256 on this machine (aws-lc, one core): {:.2} GB/s",
        sha256_speed() * 1.073_741_824
    );

    // notarium push / pull of a 1 GiB blob.
    let server = start_server();
    let host = server.url.trim_start_matches("https://").to_owned();
    let docker_config = tmp.path().join("docker");
    std::fs::create_dir_all(docker_config.join("tls").join(&host)).unwrap();
    std::fs::copy(
        &server.ca,
        docker_config.join("tls").join(&host).join("ca.crt"),
    )
    .unwrap();
    let src = tmp.path().join("src");
    big_layout(&src, mb);
    let pid = server.child.id();
    let (rss0, _) = memory(pid);
    let push = run(Command::new(BIN)
        .args(["push", "--disable-content-trust"])
        .arg(&src)
        .arg(format!("{host}/bench/big:v1"))
        .env("DOCKER_CONFIG", &docker_config));
    let (rss1, hwm1) = memory(pid);
    let out = tmp.path().join("out");
    let pull = || {
        let t = run(Command::new(BIN)
            .args([
                "pull",
                "--disable-content-trust",
                &format!("{host}/bench/big:v1"),
            ])
            .arg(&out)
            .env("DOCKER_CONFIG", &docker_config));
        std::fs::remove_dir_all(&out).unwrap();
        t
    };
    // The first pull reads the blob from the disk (it was written past the page cache),
    // the second from the page cache.
    let cold = pull();
    let warm = pull();
    let (rss2, hwm2) = memory(pid);
    // Eight pulls at once, then eight pushes to eight repositories at once: memory per
    // transfer stays a few megabytes.
    let at_once = |args: &dyn Fn(usize) -> Vec<std::ffi::OsString>| {
        let _ = Command::new("sync").status();
        let t = Instant::now();
        let children: Vec<_> = (0..8)
            .map(|i| {
                Command::new(BIN)
                    .args(args(i))
                    .env("DOCKER_CONFIG", &docker_config)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        t.elapsed().as_secs_f64()
    };
    let out_i = |i: usize| tmp.path().join(format!("out{i}"));
    let eight_pulls = at_once(&|i| {
        vec![
            "pull".into(),
            "--disable-content-trust".into(),
            format!("{host}/bench/big:v1").into(),
            out_i(i).into(),
        ]
    });
    let (rss3, hwm3) = memory(pid);
    for i in 0..8 {
        std::fs::remove_dir_all(out_i(i)).unwrap();
    }
    let eight_pushes = at_once(&|i| {
        vec![
            "push".into(),
            "--disable-content-trust".into(),
            src.clone().into(),
            format!("{host}/bench/big{i}:v1").into(),
        ]
    });
    let (rss4, hwm4) = memory(pid);
    let gb = mb as f64 / 1024.0 * 1.073_741_824;
    println!();
    println!("| {mb} MiB blob, notarium push/pull over TLS | time | throughput | server RSS (before → after, peak) |");
    println!("|---|---:|---:|---|");
    println!("| `notarium push` | {push:.2} s | {:.2} GB/s | {rss0:.1} → {rss1:.1} MB, peak {hwm1:.1} MB |", gb / push);
    println!(
        "| `notarium pull`, from disk | {cold:.2} s | {:.2} GB/s | |",
        gb / cold
    );
    println!("| `notarium pull`, from the page cache | {warm:.2} s | {:.2} GB/s | {rss1:.1} → {rss2:.1} MB, peak {hwm2:.1} MB |", gb / warm);
    println!("| 8 `notarium pull`s at once | {eight_pulls:.2} s | {:.2} GB/s | {rss2:.1} → {rss3:.1} MB, peak {hwm3:.1} MB |", 8.0 * gb / eight_pulls);
    println!("| 8 `notarium push`es at once (8 repositories) | {eight_pushes:.2} s | {:.2} GB/s | {rss3:.1} → {rss4:.1} MB, peak {hwm4:.1} MB |", 8.0 * gb / eight_pushes);
    std::fs::remove_dir_all(&src).unwrap();

    // skopeo into and out of notarium and the CNCF registry.
    let src = tmp.path().join("src512");
    big_layout(&src, skopeo_mb);
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&server.ca, certs.join("ca.crt")).unwrap();
    let cncf = notarium_testkit::registry::Distribution::start();
    let cncf_pid = cncf.pid();
    let skopeo = |args: &[&str]| {
        run(Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--preserve-digests"])
            .args(args)
            .env("HOME", tmp.path()))
    };
    let oci_src = format!("oci:{}:v1", src.display());
    let mut rows = Vec::new();
    // skopeo's own floor: the same copy between two directories, no registry at all.
    let local = tmp.path().join("out-local");
    let floor = skopeo(&[oci_src.as_str(), &format!("oci:{}:v1", local.display())]);
    std::fs::remove_dir_all(&local).unwrap();
    rows.push((
        "skopeo, layout → layout (no registry: skopeo's floor)",
        floor,
        floor,
        0.0,
    ));
    for (label, dest, flags, pid) in [
        (
            "skopeo → notarium server (TLS)",
            format!("docker://{host}/bench/skopeo:v1"),
            vec!["--dest-cert-dir", certs.to_str().unwrap()],
            pid,
        ),
        (
            "skopeo → CNCF registry (plain HTTP)",
            format!("docker://{}/bench/skopeo:v1", cncf.addr),
            vec!["--dest-tls-verify=false"],
            cncf_pid,
        ),
    ] {
        let mut a: Vec<&str> = flags.clone();
        a.extend([oci_src.as_str(), dest.as_str()]);
        let up = skopeo(&a);
        let out = tmp.path().join(format!("out-{pid}"));
        let out_ref = format!("oci:{}:v1", out.display());
        let src_flags: Vec<&str> = flags
            .iter()
            .map(|f| match *f {
                "--dest-cert-dir" => "--src-cert-dir",
                "--dest-tls-verify=false" => "--src-tls-verify=false",
                o => o,
            })
            .collect();
        let mut b = src_flags;
        b.extend([dest.as_str(), out_ref.as_str()]);
        let down = skopeo(&b);
        let (_, hwm) = memory(pid);
        rows.push((label, up, down, hwm));
        std::fs::remove_dir_all(&out).unwrap();
    }
    // The same layer moved by notarium's client to both servers: the servers compared
    // with a client that is not the bottleneck.
    for (label, registry, pid) in [
        (
            "notarium push/pull → notarium server (TLS)",
            host.clone(),
            pid,
        ),
        (
            "notarium push/pull → CNCF registry (plain HTTP)",
            cncf.addr.to_string(),
            cncf_pid,
        ),
    ] {
        let reference = format!("{registry}/bench/client:v1");
        let up = run(Command::new(BIN)
            .args(["push", "--disable-content-trust"])
            .arg(&src)
            .arg(&reference)
            .env("DOCKER_CONFIG", &docker_config));
        let out = tmp.path().join("out-client");
        let down = run(Command::new(BIN)
            .args(["pull", "--disable-content-trust", &reference])
            .arg(&out)
            .env("DOCKER_CONFIG", &docker_config));
        let (_, hwm) = memory(pid);
        rows.push((label, up, down, hwm));
        std::fs::remove_dir_all(&out).unwrap();
    }
    println!();
    println!("| {skopeo_mb} MiB layer | push | pull | server peak RSS |");
    println!("|---|---:|---:|---:|");
    for (label, up, down, hwm) in rows {
        let hwm = if hwm > 0.0 {
            format!("{hwm:.1} MB")
        } else {
            String::new()
        };
        println!("| {label} | {up:.2} s | {down:.2} s | {hwm} |");
    }
}
