//! Registry pull and push through the daemon, driven by the real docker CLI and by raw HTTP, against a real
//! registry (Debian's docker-registry, filled by skopeo; see testkit::registry) and, for failures, the test
//! kit's fault-injecting proxy in front of it. Root only (the registry fixture installs packages).
//!
//! Every step is bounded in time: docker commands are killed after `CLI_TIMEOUT`, raw streams are read with
//! deadlines.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::archive::{digest, layer, Image};
use common::{http, json_lines, Daemon};
use serde_json::{json, Value};
use testkit::fault_proxy::{Fault, FaultProxy, Rule};
use testkit::registry::{Registry, RegistryOptions};

const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// An image with two incompressible layers (~300 KB and ~200 KB), so that the blobs are worth streaming.
fn image(tag: &str, seed: u64) -> Image {
    Image::new(tag, vec![layer(1000 + seed, 300_000), layer(2000 + seed, 200_000)])
}

/// Writes `img` as a docker-archive into `dir` and pushes it to `repo_tag` with skopeo.
fn push_image(reg: &Registry, dir: &std::path::Path, img: &Image, repo_tag: &str) {
    let path = dir.join(format!("{}.tar", repo_tag.replace(['/', ':'], "_")));
    std::fs::write(&path, img.archive()).unwrap();
    reg.push_archive(&path, repo_tag);
}

/// The digest of the manifest the registry holds for `repo:reference`, and its JSON.
fn manifest(reg: &Registry, repo: &str, reference: &str) -> (String, Value) {
    let (_, bytes) = reg.manifest(repo, reference);
    (digest(&bytes), serde_json::from_slice(&bytes).unwrap())
}

struct Out {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn docker(d: &Daemon, args: &[&str]) -> Out {
    let o = d.docker_within(args, CLI_TIMEOUT);
    Out {
        ok: o.status.success(),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn docker_ok(d: &Daemon, args: &[&str]) -> String {
    let o = docker(d, args);
    assert!(
        o.ok,
        "docker {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
        o.code,
        o.stdout,
        o.stderr,
        d.log_text()
    );
    o.stdout
}

/// `{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}` rows of `docker images --digests --no-trunc`.
fn image_rows(d: &Daemon) -> Vec<(String, String, String, String)> {
    let out = docker_ok(
        d,
        &["images", "--digests", "--no-trunc", "--format", "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}"],
    );
    let mut rows: Vec<_> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "{l}");
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned(), f[3].to_owned())
        })
        .collect();
    rows.sort();
    rows
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let out = docker_ok(d, &["image", "inspect", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// What the store holds: `metadata.json` and the names under `layers/` and `blobs/sha256/`.
fn store_state(d: &Daemon) -> (String, Vec<String>, Vec<String>) {
    let names = |sub: &str| {
        let mut v: Vec<String> = std::fs::read_dir(d.root.join(sub))
            .map(|r| r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    (std::fs::read_to_string(d.root.join("metadata.json")).unwrap_or_default(), names("layers"), names("blobs/sha256"))
}

/// Entries of the store's `tmp/`.
fn tmp_entries(d: &Daemon) -> Vec<PathBuf> {
    std::fs::read_dir(d.root.join("tmp")).map(|r| r.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

/// Waits for `cond`, polling; false after `timeout`.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// base64url (RFC 4648 §5, padded) of `data`, as the docker CLI encodes X-Registry-Auth.
fn base64url(data: &[u8]) -> String {
    testkit::http::base64(data).replace('+', "-").replace('/', "_")
}

/// The JSON messages of a raw `/images/create` or `/push` answer.
fn messages(r: &http::Response) -> Vec<Value> {
    json_lines(&r.text())
}

fn stream_error(msgs: &[Value]) -> Option<String> {
    msgs.iter().find_map(|m| m["errorDetail"]["message"].as_str().map(str::to_owned))
}

#[test]
fn docker_pull_push_and_digests() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    let addr = reg.addr();
    let app = image("app:1", 1);
    push_image(&reg, tmp.path(), &app, "app:1");
    let (mdigest, m) = manifest(&reg, "app", "1");
    assert_eq!(m["config"]["digest"], app.id().as_str(), "skopeo keeps the config");

    let d = Daemon::start();
    let name = format!("{addr}/app:1");
    let t = Instant::now();
    let out = docker_ok(&d, &["pull", &name]);
    eprintln!("first pull: {:?}", t.elapsed());
    assert!(out.contains("1: Pulling from"), "{out}");
    assert_eq!(out.matches("Pull complete").count(), 2, "one per layer:\n{out}");
    assert!(out.contains(&format!("Digest: {mdigest}")), "{out}");
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    assert_eq!(out.lines().last().unwrap(), name, "docker prints the reference last");

    let rows = image_rows(&d);
    assert_eq!(rows, [(format!("{addr}/app"), "1".into(), mdigest.clone(), app.id())], "{rows:?}");
    let ins = inspect(&d, &name);
    assert_eq!(ins["Id"], app.id().as_str());
    assert_eq!(ins["RepoTags"], json!([name]));
    assert_eq!(ins["RepoDigests"], json!([format!("{addr}/app@{mdigest}")]));
    assert!(tmp_entries(&d).is_empty(), "staging cleaned: {:?}", tmp_entries(&d));

    // Again: nothing to download.
    let out = docker_ok(&d, &["pull", &name]);
    assert!(out.contains(&format!("Status: Image is up to date for {name}")), "{out}");
    assert_eq!(out.matches("Already exists").count(), 2, "{out}");
    assert!(!out.contains("Pull complete"), "{out}");

    // By digest, into a store that lost the image.
    docker_ok(&d, &["rmi", &name]);
    assert!(image_rows(&d).is_empty());
    let by_digest = format!("{addr}/app@{mdigest}");
    let out = docker_ok(&d, &["pull", &by_digest]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {by_digest}")), "{out}");
    let rows = image_rows(&d);
    assert_eq!(rows, [(format!("{addr}/app"), "<none>".into(), mdigest.clone(), app.id())], "{rows:?}");
    let ins = inspect(&d, &by_digest);
    assert_eq!(ins["RepoDigests"], json!([by_digest]));
    assert_eq!(ins["RepoTags"], json!([]));
    docker_ok(&d, &["pull", &name]);
    assert_eq!(inspect(&d, &name)["Id"], app.id().as_str());

    // Push of a pulled image to another repository: the same manifest, byte for byte; blobs mounted.
    let copy = format!("{addr}/copy:1");
    docker_ok(&d, &["tag", &name, &copy]);
    let out = docker_ok(&d, &["push", &copy]);
    assert!(out.contains(&format!("The push refers to repository [{addr}/copy]")), "{out}");
    assert!(out.contains(&format!("1: digest: {mdigest} size: ")), "{out}");
    assert!(out.contains("Mounted from app") || out.contains("Layer already exists"), "{out}");
    assert_eq!(reg.manifest("copy", "1").1, reg.manifest("app", "1").1);

    // Push of a loaded image: the registry gets its config and layers; a second daemon pulls the same image.
    let loaded = image("loaded:1", 2);
    d.load(&loaded.archive());
    let pushed_name = format!("{addr}/team/loaded:7");
    docker_ok(&d, &["tag", "loaded:1", &pushed_name]);
    let out = docker_ok(&d, &["push", &pushed_name]);
    assert_eq!(out.matches("Pushed").count(), 2, "{out}");
    let (pdigest, pm) = manifest(&reg, "team/loaded", "7");
    assert!(out.contains(&format!("7: digest: {pdigest} size: ")), "{out}");
    assert_eq!(pm["config"]["digest"], loaded.id().as_str());
    assert_eq!(pm["layers"].as_array().unwrap().len(), 2);
    for l in pm["layers"].as_array().unwrap() {
        assert!(reg.blob_exists("team/loaded", l["digest"].as_str().unwrap()), "{l}");
    }
    assert!(reg.blob_exists("team/loaded", &loaded.id()));
    // A tag pushed again: every blob is already there.
    let out = docker_ok(&d, &["push", &pushed_name]);
    assert_eq!(out.matches("Layer already exists").count(), 2, "{out}");
    assert!(out.contains(&format!("7: digest: {pdigest} size: ")), "{out}");
    // `push -a`: every tag of the repository; a tag that does not exist: an error.
    for t in ["a", "b"] {
        docker_ok(&d, &["tag", "loaded:1", &format!("{addr}/multi:{t}")]);
    }
    let out = docker_ok(&d, &["push", "-a", &format!("{addr}/multi")]);
    assert!(out.contains(&format!("a: digest: {pdigest}")) && out.contains(&format!("b: digest: {pdigest}")), "{out}");
    assert_eq!(reg.manifest("multi", "b").1, reg.manifest("team/loaded", "7").1);
    let o = docker(&d, &["push", &format!("{addr}/multi:nope")]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("No such image"), "{}", o.stderr);

    // RepoDigests recorded for what was pushed.
    let digests = inspect(&d, &pushed_name)["RepoDigests"].clone();
    assert!(digests.as_array().unwrap().contains(&json!(format!("{addr}/team/loaded@{pdigest}"))), "{digests}");

    let d2 = Daemon::start();
    let out = docker_ok(&d2, &["pull", &pushed_name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_eq!(inspect(&d2, &pushed_name)["Id"], loaded.id().as_str(), "the image ID survives push and pull");
}

#[test]
fn missing_tag_and_missing_repository() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    push_image(&reg, tmp.path(), &image("app:1", 3), "app:1");
    let d = Daemon::start();
    let before = store_state(&d);

    let o = docker(&d, &["pull", &format!("{}/app:nope", reg.addr())]);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("manifest unknown") && o.stderr.contains("not found"), "{}", o.stderr);
    let o = docker(&d, &["pull", &format!("{}/nothing/here:1", reg.addr())]);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("not found") || o.stderr.contains("unknown"), "{}", o.stderr);

    // The same through the API, as dockerd: 404 before anything streams (create and /distribution).
    let r = d.http("POST", &format!("/images/create?fromImage={}/app&tag=nope", reg.addr()));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.message().contains("manifest unknown"), "{}", r.text());
    let r = d.http("GET", &format!("/distribution/{}/app:nope/json", reg.addr()));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.message().contains("manifest unknown"), "{}", r.text());
    assert_eq!(store_state(&d), before, "nothing written");
    assert!(docker_ok(&d, &["images", "-q"]).trim().is_empty());
}

/// A byte flipped in a layer blob: the pull fails in-band with the digest mismatch, the daemon stays up and
/// the store is as it was.
#[test]
fn corrupt_blob_fails_in_band() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    let app = image("app:1", 4);
    push_image(&reg, tmp.path(), &app, "app:1");
    let (_, m) = manifest(&reg, "app", "1");
    let proxy = FaultProxy::start(&reg.addr());
    let d = Daemon::start();
    let other = image("local:1", 5);
    d.load(&other.archive());
    let before = store_state(&d);
    let name = format!("{}/app:1", proxy.addr());

    // Byte 9 of a gzip member is its OS field: the stream still inflates, only the digest tells.
    let blob = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    proxy.add_rule(Rule::new(&blob, Fault::FlipByte(9)).forever());
    let o = docker(&d, &["pull", &name]);
    assert!(!o.ok, "pull of a corrupt blob succeeded:\n{}", o.stdout);
    assert!(o.stdout.contains("Pulling from"), "the stream had started:\n{}", o.stdout);
    eprintln!("flipped gzip header byte: {}", o.stderr.trim());
    assert!(o.stderr.contains("digest mismatch") && o.stderr.contains(&blob), "{}", o.stderr);
    assert!(!o.stdout.contains("Status: Downloaded"), "{}", o.stdout);

    // Raw: 200, then the error as the stream's last message.
    let r = d.http("POST", &format!("/images/create?fromImage={}/app&tag=1", proxy.addr()));
    assert_eq!(r.status, 200, "{}", r.text());
    let msgs = messages(&r);
    let err = stream_error(&msgs).unwrap_or_else(|| panic!("no in-band error: {}", r.text()));
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(msgs.last().unwrap()["errorDetail"].is_object(), "the error ends the stream: {}", r.text());

    // A byte flipped inside the deflate data fails too, whatever notices first.
    proxy.clear_rules();
    proxy.add_rule(Rule::new(&blob, Fault::FlipByte(150_000)).forever());
    let o = docker(&d, &["pull", &name]);
    assert!(!o.ok, "{}", o.stdout);
    eprintln!("flipped deflate byte: {}", o.stderr.trim());
    assert!(!o.stderr.trim().is_empty());

    // The daemon keeps serving, and nothing of the failed pulls is in the store.
    assert_eq!(d.http("GET", "/_ping").status, 200);
    let ids = docker_ok(&d, &["images", "-q", "--no-trunc"]);
    assert_eq!(ids.trim(), other.id(), "{ids}");
    assert_eq!(store_state(&d), before);
    assert!(eventually(Duration::from_secs(5), || tmp_entries(&d).is_empty()), "{:?}", tmp_entries(&d));

    // Without the fault the same pull works.
    proxy.clear_rules();
    let out = docker_ok(&d, &["pull", &name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_eq!(inspect(&d, &name)["Id"], app.id().as_str());
}

/// A registry answering 503 for ever: the stream reports the retries; closing the connection cancels the
/// pull (no more requests reach the registry) and the daemon goes on serving.
#[test]
fn retries_are_reported_and_closing_cancels() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    push_image(&reg, tmp.path(), &image("app:1", 6), "app:1");
    let proxy = FaultProxy::start(&reg.addr());
    proxy.add_rule(Rule::new("/manifests/", Fault::Status(503)).forever());
    let d = Daemon::start_with(|c| {
        c.args(["--max-download-backoff", "0.2"]);
    });
    let before = store_state(&d);

    let mut s = http::open(&d.sock, "POST", &format!("/images/create?fromImage={}/app&tag=1", proxy.addr()), &[]);
    let retried = s.read_until(Duration::from_secs(20), |t| t.matches("Retrying in").count() >= 3);
    assert!(retried, "no retries reported:\n{}\ndaemon log:\n{}", s.text(), d.log_text());
    let text = s.text();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("503"), "the cause is named: {text}");
    let manifest_requests = || proxy.requests().iter().filter(|(_, p, _)| p.contains("/manifests/")).count();
    assert!(manifest_requests() >= 3);

    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || d.log_text().contains("failed: cancelled")),
        "the daemon did not cancel the pull:\n{}",
        d.log_text()
    );
    let n = manifest_requests();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(manifest_requests(), n, "requests went on after the cancellation");

    assert_eq!(d.http("GET", "/_ping").status, 200);
    assert!(docker_ok(&d, &["images", "-q"]).trim().is_empty());
    assert_eq!(store_state(&d), before);
    assert!(tmp_entries(&d).is_empty(), "{:?}", tmp_entries(&d));
    assert!(!std::fs::read_dir(d.root.join("leases")).is_ok_and(|mut r| r.next().is_some()), "a lease was left");

    // The same registry, once it answers again, through the same daemon.
    proxy.clear_rules();
    let out = docker_ok(&d, &["pull", &format!("{}/app:1", proxy.addr())]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
}

/// `X-Registry-Auth` as API clients send it (base64url JSON, keys in any case), against a registry with
/// htpasswd; without it, or with a wrong password, the pull fails with the registry's refusal.
#[test]
fn x_registry_auth() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (user, pass) = ("tester", "s3cr?t>>~");
    let reg = Registry::start(RegistryOptions { tls: false, htpasswd: Some((user.into(), pass.into())) });
    let addr = reg.addr();
    let one = image("secure/app:1", 7);
    let two = image("secure/app:2", 8);
    push_image(&reg, tmp.path(), &one, "secure/app:1");
    push_image(&reg, tmp.path(), &two, "secure/app:2");
    let (d1, _) = manifest(&reg, "secure/app", "1");
    let d = Daemon::start();
    let create = |tag: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("X-Registry-Auth", a)).into_iter().collect();
        d.http_body("POST", &format!("/images/create?fromImage={addr}/secure/app&tag={tag}"), &headers, b"")
    };

    // Anonymous: refused, with the reason.
    let r = create("1", None);
    let err = stream_error(&messages(&r)).unwrap_or_else(|| format!("{} {}", r.status, r.text()));
    assert!(err.contains("no basic auth credentials") && err.contains("denied"), "{err}");
    let o = docker(&d, &["pull", &format!("{addr}/secure/app:1")]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("no basic auth credentials"), "{}", o.stderr);

    // A wrong password: the registry's 401.
    let bad = base64url(json!({"username": user, "password": "wrong", "serveraddress": addr}).to_string().as_bytes());
    let r = create("1", Some(&bad));
    let err = stream_error(&messages(&r)).unwrap_or_else(|| format!("{} {}", r.status, r.text()));
    assert!(err.contains("401"), "{err}");
    assert!(docker_ok(&d, &["images", "-q"]).trim().is_empty());

    // docker's own encoding: base64url of {"username","password","serveraddress"}.
    let good_json = json!({"username": user, "password": pass, "serveraddress": addr}).to_string();
    let good = base64url(good_json.as_bytes());
    assert_ne!(good, testkit::http::base64(good_json.as_bytes()), "the password makes base64url differ");
    let r = create("1", Some(&good));
    assert_eq!(r.status, 200);
    let msgs = messages(&r);
    assert_eq!(stream_error(&msgs), None, "{}", r.text());
    assert_eq!(msgs.last().unwrap()["status"], format!("Status: Downloaded newer image for {addr}/secure/app:1"));
    assert_eq!(inspect(&d, &format!("{addr}/secure/app:1"))["Id"], one.id().as_str());

    // Other clients capitalise the keys (Go structs without json tags) and may leave the padding out.
    let caps = json!({"Username": user, "Password": pass, "ServerAddress": addr}).to_string();
    let caps = base64url(caps.as_bytes()).trim_end_matches('=').to_owned();
    let r = create("2", Some(&caps));
    let msgs = messages(&r);
    assert_eq!(stream_error(&msgs), None, "{}", r.text());
    assert_eq!(inspect(&d, &format!("{addr}/secure/app:2"))["Id"], two.id().as_str());

    // Not base64 JSON at all: a 400 before anything is attempted.
    let r = create("1", Some("%%%"));
    assert_eq!(r.status, 400, "{}", r.text());

    // /distribution with and without credentials.
    let path = format!("/distribution/{addr}/secure/app:1/json");
    let r = d.http_body("GET", &path, &[("X-Registry-Auth", &good)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Descriptor"]["digest"], d1.as_str());
    let r = d.http("GET", &path);
    assert_eq!(r.status, 401, "{}", r.text());

    // Push with the header: a new tag of a pulled image.
    docker_ok(&d, &["tag", &format!("{addr}/secure/app:1"), &format!("{addr}/secure/app:3")]);
    let push = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("X-Registry-Auth", a)).into_iter().collect();
        d.http_body("POST", &format!("/images/{addr}/secure/app/push?tag=3"), &headers, b"")
    };
    let r = push(None);
    let err = stream_error(&messages(&r)).unwrap_or_else(|| format!("{} {}", r.status, r.text()));
    assert!(err.contains("denied") || err.contains("401"), "{err}");
    let r = push(Some(&good));
    let msgs = messages(&r);
    assert_eq!(stream_error(&msgs), None, "{}", r.text());
    assert!(r.text().contains(&format!("3: digest: {d1}")), "{}", r.text());
    assert_eq!(reg.manifest("secure/app", "3").1, reg.manifest("secure/app", "1").1);

    // `docker login` (POST /auth) checks the credentials against the registry; then the CLI sends them.
    let o = docker(&d, &["login", "-u", user, "-p", "wrong", &addr]);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("incorrect username or password"), "{}", o.stderr);
    let out = docker_ok(&d, &["login", "-u", user, "-p", pass, &addr]);
    assert!(out.contains("Login Succeeded"), "{out}");
    docker_ok(&d, &["rmi", &format!("{addr}/secure/app:2")]);
    let out = docker_ok(&d, &["pull", &format!("{addr}/secure/app:2")]);
    assert!(out.contains("Downloaded newer image"), "{out}");
}

#[test]
fn distribution_inspect() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    push_image(&reg, tmp.path(), &image("app:1", 9), "app:1");
    let (ct, bytes) = reg.manifest("app", "1");
    let mdigest = digest(&bytes);
    let d = Daemon::start();
    for path in
        [format!("/distribution/{}/app:1/json", reg.addr()), format!("/v1.41/distribution/{}/app:1/json", reg.addr())]
    {
        let r = d.http("GET", &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["Descriptor"]["digest"], mdigest.as_str(), "{v}");
        assert_eq!(v["Descriptor"]["mediaType"], ct.as_str(), "{v}");
        assert_eq!(v["Descriptor"]["size"], bytes.len(), "{v}");
        assert_eq!(v["Platforms"], json!([{"architecture": "amd64", "os": "linux"}]), "{v}");
    }
    // By digest as well.
    let r = d.http("GET", &format!("/distribution/{}/app@{mdigest}/json", reg.addr()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Descriptor"]["digest"], mdigest.as_str());
    // Nothing was pulled.
    assert!(docker_ok(&d, &["images", "-q"]).trim().is_empty());
}

/// The daemon's registry flags reach the client: stall timeout and back-off (a stalled blob resumes),
/// attempts (a registry failing for ever fails the pull), mirrors (tried first), concurrent downloads.
#[test]
fn registry_flags() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    let app = image("app:1", 10);
    push_image(&reg, tmp.path(), &app, "app:1");
    let (_, m) = manifest(&reg, "app", "1");
    let blob = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let proxy = FaultProxy::start(&reg.addr());

    // A blob that stalls after 64 KiB for a minute: dropped after 0.5 s without a byte, resumed.
    let d = Daemon::start_with(|c| {
        c.args(["--download-stall-timeout", "0.5", "--max-download-backoff", "0.2", "--max-concurrent-downloads", "1"]);
    });
    proxy.add_rule(Rule::new(&blob, Fault::Stall { after: 64 * 1024, for_: Duration::from_secs(60) }));
    let t = Instant::now();
    let out = docker_ok(&d, &["pull", &format!("{}/app:1", proxy.addr())]);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(out.contains("Retrying in"), "{out}");
    assert!(out.contains("Waiting"), "one download at a time: {out}");
    assert_eq!(inspect(&d, &format!("{}/app:1", proxy.addr()))["Id"], app.id().as_str());
    let blob_gets = proxy.requests().iter().filter(|(m, p, _)| m == "GET" && p.contains(&blob)).count();
    assert_eq!(blob_gets, 2, "{:?}", proxy.requests());
    drop(d);

    // Two attempts, then the registry's failure.
    let d = Daemon::start_with(|c| {
        c.args(["--max-download-attempts", "2", "--max-download-backoff", "0.2"]);
    });
    proxy.reset_counters();
    proxy.add_rule(Rule::new("/manifests/", Fault::Status(503)).forever());
    let o = docker(&d, &["pull", &format!("{}/app:1", proxy.addr())]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("503"), "{}", o.stderr);
    let manifest_gets = proxy.requests().iter().filter(|(_, p, _)| p.contains("/manifests/")).count();
    assert_eq!(manifest_gets, 2, "{:?}", proxy.requests());
    proxy.clear_rules();
    drop(d);

    // A mirror for the registry's domain is asked first.
    let mirror = format!("{}=http://{}", reg.addr(), proxy.addr());
    let d = Daemon::start_with(|c| {
        c.args([
            "--registry-mirror",
            &mirror,
            "--registry-mirror",
            "http://127.0.0.1:9",
            "--insecure-registry",
            "reg.test:5000",
        ]);
    });
    // `docker info` shows the settings, as with dockerd.
    let info = docker_ok(&d, &["info", "--format", "{{json .RegistryConfig}}"]);
    let rc: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    assert_eq!(rc["Mirrors"], json!(["http://127.0.0.1:9"]), "{rc}");
    assert_eq!(rc["IndexConfigs"][reg.addr()]["Mirrors"], json!([format!("http://{}", proxy.addr())]), "{rc}");
    assert_eq!(rc["IndexConfigs"]["reg.test:5000"]["Secure"], json!(false), "{rc}");
    assert!(rc["InsecureRegistryCIDRs"].as_array().unwrap().contains(&json!("127.0.0.0/8")), "{rc}");
    proxy.reset_counters();
    let name = format!("{}/app:1", reg.addr());
    docker_ok(&d, &["pull", &name]);
    assert!(proxy.requests().iter().any(|(_, p, _)| p.contains("/app/manifests/1")), "{:?}", proxy.requests());
    assert!(proxy.body_bytes_forwarded() > 400_000, "the layers came through the mirror");
    assert_eq!(inspect(&d, &name)["Id"], app.id().as_str());
    // An unreachable mirror is skipped.
    drop(d);
    let dead = format!("{}=http://127.0.0.1:1", reg.addr());
    let d = Daemon::start_with(|c| {
        c.args(["--registry-mirror", &dead]);
    });
    docker_ok(&d, &["pull", &name]);
}

/// SIGTERM while a pull waits out a failing registry: the pull is cancelled at once (the client gets the
/// error in-band) instead of holding the shutdown for its whole grace period, and the next start leaves
/// nothing of the pull behind.
#[test]
fn sigterm_during_a_pull() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    let app = image("app:1", 11);
    push_image(&reg, tmp.path(), &app, "app:1");
    let (_, m) = manifest(&reg, "app", "1");
    let blob = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let proxy = FaultProxy::start(&reg.addr());
    // The first layer arrives in part, then its blob answers 503 for ever.
    proxy.add_rule(Rule::new(&blob, Fault::CutAfter(100_000)));
    proxy.add_rule(Rule::new(&blob, Fault::Status(503)).forever());
    let mut d = Daemon::start_with(|c| {
        c.args(["--max-download-backoff", "0.2"]);
    });
    let mut s = http::open(&d.sock, "POST", &format!("/images/create?fromImage={}/app&tag=1", proxy.addr()), &[]);
    assert!(
        s.read_until(Duration::from_secs(20), |t| t.matches("Retrying in").count() >= 3),
        "{}\n{}",
        s.text(),
        d.log_text()
    );
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(20));
    let took = t.elapsed();
    assert!(status.success(), "{status}\n{}", d.log_text());
    assert!(took < Duration::from_secs(5), "the pull held the shutdown for {took:?}:\n{}", d.log_text());
    // The client is told, in-band, before the stream ends.
    s.read_until(Duration::from_secs(5), |_| false);
    let text = s.text();
    assert!(text.contains(r#""errorDetail":{"message":"cancelled"}"#), "{text}");
    assert!(text.ends_with("0\r\n\r\n"), "the stream ends cleanly: {text}");
    drop(s);

    // The next start recovers: no image, tmp/ empty, no lease.
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let root = d.root.clone();
    let d = Daemon::start_in(dir, root, |_| {});
    assert!(docker_ok(&d, &["images", "-q"]).trim().is_empty());
    assert!(tmp_entries(&d).is_empty(), "{:?}", tmp_entries(&d));
    assert!(!std::fs::read_dir(d.root.join("leases")).is_ok_and(|mut r| r.next().is_some()), "a lease was left");
    proxy.clear_rules();
    docker_ok(&d, &["pull", &format!("{}/app:1", proxy.addr())]);
    assert_eq!(inspect(&d, &format!("{}/app:1", proxy.addr()))["Id"], app.id().as_str());
}
