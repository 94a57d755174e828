//! The registry fixture (Debian's docker-registry, filled by skopeo) and the fault proxy in front of it.
//! The registry tests need root (packages are installed when missing); the proxy's framing test does not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::fault_proxy::{Fault, FaultProxy, Rule};
use testkit::http;
use testkit::registry::{Compression, ManifestFormat, PushOptions, Registry, RegistryOptions};

const V2S2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A docker-archive with one layer (`data.bin`: `size` noise bytes).
struct Image {
    archive: PathBuf,
    config_digest: String,
}

fn docker_archive(dir: &Path, name: &str, tag: &str, seed: u64, size: usize) -> Image {
    let mut layer = tar::Builder::new(Vec::new());
    let data = testkit::noise(seed, size);
    let mut h = tar::Header::new_ustar();
    h.set_path("data.bin").unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    layer.append(&h, &data[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/data.bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "testkit registry_fixture"}],
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let config_name = format!("{}.json", &config_digest[7..]);
    let layer_name = format!("{}/layer.tar", &diff_id[7..]);
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": [format!("{name}:{tag}")],
        "Layers": [layer_name],
    }]))
    .unwrap();
    let archive = dir.join(format!("{}-{tag}.tar", name.replace('/', "_")));
    let mut out = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    for (path, bytes) in [(config_name.as_str(), &config), (layer_name.as_str(), &layer), ("manifest.json", &manifest)]
    {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        out.append(&h, &bytes[..]).unwrap();
    }
    out.finish().unwrap();
    Image { archive, config_digest }
}

fn manifest_json(reg: &Registry, repo: &str, reference: &str) -> (String, Value) {
    let (ct, bytes) = reg.manifest(repo, reference);
    (ct, serde_json::from_slice(&bytes).unwrap())
}

fn layer_digest(m: &Value) -> String {
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

/// A plain registry holding `test/app:1` (one 256 KiB layer), and that layer's digest and bytes.
fn filled_registry(tmp: &Path) -> (Registry, String, Vec<u8>) {
    let reg = Registry::start(RegistryOptions::default());
    let img = docker_archive(tmp, "test/app", "1", 1, 256 * 1024);
    reg.push_archive(&img.archive, "test/app:1");
    let (_, m) = manifest_json(&reg, "test/app", "1");
    let digest = layer_digest(&m);
    let blob = reg.blob("test/app", &digest);
    (reg, digest, blob)
}

#[test]
fn plain_registry_push_and_read_back() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions::default());
    assert!(reg.addr().starts_with("127.0.0.1:"));
    assert_eq!(reg.url(), format!("http://{}", reg.addr()));
    assert_eq!(reg.ca_cert_path(), None);
    let img = docker_archive(tmp.path(), "test/app", "1", 1, 64 * 1024);
    reg.push_archive(&img.archive, "test/app:1");

    let (ct, m) = manifest_json(&reg, "test/app", "1");
    assert_eq!(ct, V2S2);
    assert_eq!(m["mediaType"], V2S2);
    assert_eq!(m["config"]["digest"], img.config_digest.as_str(), "skopeo keeps the config bytes");
    let layer = layer_digest(&m);
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
    assert!(reg.blob_exists("test/app", &img.config_digest));
    assert!(reg.blob_exists("test/app", &layer));
    assert!(!reg.blob_exists("test/app", &sha256(b"absent")));
    assert_eq!(sha256(&reg.blob("test/app", &layer)), layer);
    // by digest as well as by tag
    let (_, by_tag) = reg.manifest("test/app", "1");
    let (_, by_digest) = reg.manifest("test/app", &sha256(&by_tag));
    assert_eq!(by_tag, by_digest);
    assert!(reg.storage_dir().join("docker/registry/v2/blobs/sha256").is_dir());
    let dir = reg.storage_dir();
    drop(reg);
    assert!(!dir.exists(), "the registry's directory goes with it");
}

/// skopeo 1.9 reuses a blob that the registry already holds for the same uncompressed layer, in any
/// repository, whatever `--dest-compress-format` asks: each compression gets a registry of its own here.
#[test]
fn push_formats_and_compression() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = docker_archive(tmp.path(), "test/fmt", "1", 2, 32 * 1024);
    let src = format!("docker-archive:{}", img.archive.display());

    let reg = Registry::start(RegistryOptions::default());
    let oci_zstd = PushOptions { format: Some(ManifestFormat::Oci), compress: Some(Compression::Zstd), via: None };
    reg.push_with(&src, "test/fmt:zstd", &oci_zstd);
    let (ct, m) = manifest_json(&reg, "test/fmt", "zstd");
    assert_eq!(ct, OCI);
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
    let blob = reg.blob("test/fmt", &layer_digest(&m));
    assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
    // The quirk itself: gzip asked, the zstd blob already there reused.
    let oci_gzip = PushOptions { format: Some(ManifestFormat::Oci), compress: Some(Compression::Gzip), via: None };
    reg.push_with(&src, "test/other:gzip", &oci_gzip);
    let (_, m) = manifest_json(&reg, "test/other", "gzip");
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");

    let reg = Registry::start(RegistryOptions::default());
    reg.push_with(&src, "test/fmt:gzip", &oci_gzip);
    let (ct, m) = manifest_json(&reg, "test/fmt", "gzip");
    assert_eq!(ct, OCI);
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let blob = reg.blob("test/fmt", &layer_digest(&m));
    assert_eq!(&blob[..2], &[0x1f, 0x8b], "a gzip member");

    // An OCI archive, made from the docker-archive by skopeo, pushed as it is.
    let oci_archive = tmp.path().join("fmt.oci.tar");
    let skopeo = testkit::registry::ensure_tool("skopeo", "skopeo");
    let out = Command::new(skopeo)
        .args(["--insecure-policy", "copy", "--quiet", &src])
        .arg(format!("oci-archive:{}:test/fmt:1", oci_archive.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    reg.push_oci_archive(&oci_archive, "test/fmt:from-oci");
    let (ct, m) = manifest_json(&reg, "test/fmt", "from-oci");
    assert_eq!(ct, OCI);
    assert_eq!(m["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");

    // zstd in a Docker schema 2 manifest: skopeo refuses (after uploading the blobs).
    let reg = Registry::start(RegistryOptions::default());
    let v2s2_zstd = PushOptions { format: Some(ManifestFormat::V2s2), compress: Some(Compression::Zstd), via: None };
    let err = reg.try_push_with(&src, "test/fmt:v2s2-zstd", &v2s2_zstd).unwrap_err();
    assert!(err.contains("zstd compression is not supported"), "{err}");
}

#[test]
fn tls_and_htpasswd_registry() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions { tls: true, htpasswd: Some(("tester".into(), "s3cret".into())) });
    assert_eq!(reg.url(), format!("https://{}", reg.addr()));
    let ca = reg.ca_cert_path().unwrap();
    assert!(std::fs::read_to_string(&ca).unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(reg.cert_dir().unwrap().join("ca.crt"), ca);
    let names: Vec<_> = std::fs::read_dir(reg.cert_dir().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["ca.crt"], "only the CA: skopeo takes a *.key there for a client key");

    let img = docker_archive(tmp.path(), "secure/app", "1", 3, 16 * 1024);
    reg.push_archive(&img.archive, "secure/app:1");
    let (ct, m) = manifest_json(&reg, "secure/app", "1");
    assert_eq!(ct, V2S2);
    assert_eq!(m["config"]["digest"], img.config_digest.as_str());
    assert!(reg.blob_exists("secure/app", &img.config_digest));

    let bad = format!("Basic {}", http::base64(b"tester:wrong"));
    let r = reg.request("GET", "/v2/", &[("Authorization", &bad)]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic realm="));
}

#[test]
fn htpasswd_without_tls() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOptions { tls: false, htpasswd: Some(("u".into(), "p".into())) });
    assert_eq!(reg.url(), format!("http://{}", reg.addr()));
    let img = docker_archive(tmp.path(), "auth/app", "1", 5, 8 * 1024);
    reg.push_archive(&img.archive, "auth/app:1");
    assert!(reg.blob_exists("auth/app", &img.config_digest));
    let r = http::get(&reg.addr(), "/v2/").unwrap();
    assert_eq!(r.status, 401, "without credentials");
}

#[test]
fn proxy_passes_through_counts_and_rewrites_locations() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, digest, blob) = filled_registry(tmp.path());
    let proxy = FaultProxy::start(&reg.addr());
    assert_eq!(proxy.upstream(), reg.addr());
    assert_eq!(proxy.url(), format!("http://{}", proxy.addr()));
    let path = format!("/v2/test/app/blobs/{digest}");

    // Two requests on one keep-alive connection.
    let mut conn = http::Conn::connect(&proxy.addr()).unwrap();
    for _ in 0..2 {
        let r = conn.send("GET", &path, &[], &[]).unwrap();
        assert_eq!((r.status, r.complete), (200, true));
        assert_eq!(r.body, blob);
    }
    let r = conn.send("HEAD", &path, &[], &[]).unwrap();
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(proxy.body_bytes_forwarded(), 2 * blob.len() as u64);
    let log = proxy.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0], ("GET".to_string(), path.clone(), 200));
    assert_eq!(log[2].0, "HEAD");
    proxy.reset_counters();
    assert_eq!((proxy.body_bytes_forwarded(), proxy.requests().len()), (0, 0));

    // The registry builds absolute upload URLs from Host: those naming the upstream are rewritten.
    let r = http::request(&proxy.addr(), "POST", "/v2/test/app/blobs/uploads/", &[("Host", &reg.addr())], &[]).unwrap();
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap();
    assert!(location.starts_with(&format!("{}/v2/test/app/blobs/uploads/", proxy.url())), "{location}");

    // A whole push through the proxy (POST, PATCH with a streamed body, PUT), then read back directly.
    let img = docker_archive(tmp.path(), "test/via", "1", 4, 128 * 1024);
    let via = PushOptions { via: Some(proxy.addr()), ..Default::default() };
    reg.push_with(&format!("docker-archive:{}", img.archive.display()), "test/via:1", &via);
    let methods: Vec<String> = proxy.requests().into_iter().map(|(m, _, _)| m).collect();
    assert!(methods.iter().any(|m| m == "PATCH") && methods.iter().any(|m| m == "PUT"), "{methods:?}");
    let (_, m) = manifest_json(&reg, "test/via", "1");
    assert_eq!(m["config"]["digest"], img.config_digest.as_str());
}

#[test]
fn proxy_cut_stall_flip_range() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, digest, blob) = filled_registry(tmp.path());
    let proxy = FaultProxy::start(&reg.addr());
    let path = format!("/v2/test/app/blobs/{digest}");
    let get = |headers: &[(&str, &str)]| http::request(&proxy.addr(), "GET", &path, headers, &[]).unwrap();

    // CutAfter: the head says the whole length, 1000 bytes arrive, then the connection ends; once only.
    proxy.add_rule(Rule::new("/blobs/", Fault::CutAfter(1000)));
    let r = get(&[]);
    assert_eq!((r.status, r.complete, r.body.len()), (200, false, 1000));
    assert_eq!(r.header("content-length").unwrap(), blob.len().to_string());
    assert_eq!(r.body, blob[..1000]);
    assert_eq!(proxy.body_bytes_forwarded(), 1000);
    assert!(proxy.rules().is_empty(), "used up");
    assert_eq!(get(&[]).body, blob);

    // Only for the method named; a keep-alive client sees the connection close after a cut, even of a
    // response without a body.
    proxy.add_rule(Rule::new("/blobs/", Fault::CutAfter(0)).method("HEAD"));
    let mut conn = http::Conn::connect(&proxy.addr()).unwrap();
    assert!(conn.send("GET", &path, &[], &[]).unwrap().complete);
    assert_eq!(proxy.rules().len(), 1, "not for GET");
    let r = conn.send("HEAD", &path, &[], &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(proxy.rules().is_empty());
    assert!(conn.send("GET", &path, &[], &[]).is_err(), "closed after the cut");

    // Stall: 100 bytes, nothing for 400 ms, then the end.
    proxy.add_rule(Rule::new(&digest, Fault::Stall { after: 100, for_: Duration::from_millis(400) }));
    let t = Instant::now();
    let r = get(&[]);
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
    assert_eq!((r.complete, r.body.len()), (false, 100));

    // FlipByte: same length, one byte differs.
    proxy.add_rule(Rule::new(&digest, Fault::FlipByte(12345)));
    let r = get(&[]);
    assert!(r.complete);
    assert_eq!(r.body.len(), blob.len());
    let diff: Vec<usize> = (0..blob.len()).filter(|&i| r.body[i] != blob[i]).collect();
    assert_eq!(diff, [12345]);
    assert_eq!(r.body[12345], blob[12345] ^ 0xff);

    // IgnoreRange: 206 without the rule, 200 and everything with it.
    let r = get(&[("Range", "bytes=100-199")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &blob[100..200]));
    proxy.add_rule(Rule::new(&digest, Fault::IgnoreRange));
    let r = get(&[("Range", "bytes=100-199")]);
    assert_eq!((r.status, r.body.len()), (200, blob.len()));

    // `times` and `forever`.
    proxy.add_rule(Rule::new(&digest, Fault::CutAfter(10)).times(2));
    assert!(!get(&[]).complete);
    assert!(!get(&[]).complete);
    assert!(get(&[]).complete);
    proxy.add_rule(Rule::new(&digest, Fault::CutAfter(10)).forever());
    for _ in 0..3 {
        assert!(!get(&[]).complete);
    }
    proxy.clear_rules();
    assert!(get(&[]).complete);
}

#[test]
fn proxy_local_answers() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, digest, blob) = filled_registry(tmp.path());
    let proxy = FaultProxy::start(&reg.addr());
    let path = format!("/v2/test/app/blobs/{digest}");

    proxy.add_rule(Rule::new("/blobs/", Fault::Status(503)));
    let mut conn = http::Conn::connect(&proxy.addr()).unwrap();
    let r = conn.send("GET", &path, &[], &[]).unwrap();
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("errors"));
    assert_eq!(proxy.requests().last().unwrap(), &("GET".to_string(), path.clone(), 503));
    assert_eq!(proxy.body_bytes_forwarded(), 0, "answers of its own are not forwarded bytes");
    // the connection stays usable
    assert_eq!(conn.send("GET", &path, &[], &[]).unwrap().body, blob);

    // A request with a body is read to its end before the answer.
    proxy.add_rule(Rule::new("/uploads/", Fault::Status(500)).method("POST"));
    let r = conn.send("POST", "/v2/test/app/blobs/uploads/", &[], &[7u8; 5000]).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(conn.send("HEAD", &path, &[], &[]).unwrap().status, 200);

    proxy.add_rule(Rule::new("/v2/", Fault::Status(401)));
    let r = http::get(&proxy.addr(), "/v2/").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"x\""));

    proxy.add_rule(Rule::new(&digest, Fault::RedirectTo(reg.url())));
    let r = http::get(&proxy.addr(), &format!("{path}?x=1")).unwrap();
    assert_eq!(r.status, 307);
    assert_eq!(r.header("location").unwrap(), format!("{}{path}?x=1", reg.url()));

    proxy.add_rule(Rule::new("/manifests/", Fault::Garbage));
    let r = http::get(&proxy.addr(), "/v2/test/app/manifests/1").unwrap();
    assert_eq!((r.status, r.complete), (200, true));
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    let accept = testkit::registry::MANIFEST_ACCEPT;
    let r = http::request(&proxy.addr(), "GET", "/v2/test/app/manifests/1", &[("Accept", accept)], &[]).unwrap();
    assert_eq!(r.status, 200, "used up");
    assert!(serde_json::from_slice::<Value>(&r.body).is_ok());
}

#[test]
fn fault_proxy_binary_counts_bytes() {
    if !testkit::root("registry tests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, digest, blob) = filled_registry(tmp.path());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let stats = tmp.path().join("stats");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fault-proxy"))
        .args(["--listen", &listen, "--upstream", &reg.addr(), "--stats-file"])
        .arg(&stats)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "fault-proxy did not listen");
        thread::sleep(Duration::from_millis(20));
    }
    let r = http::get(&listen, &format!("/v2/test/app/blobs/{digest}")).unwrap();
    assert_eq!(r.body, blob);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(std::fs::read_to_string(&stats).unwrap(), format!("{}\n", blob.len()));
}

/// An upstream of its own answering with chunked bodies (the registry sends Content-Length), echoing the
/// size of the request body it got.
fn chunked_upstream() -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        // one client connection, keep-alive, until it closes
        let (s, _) = listener.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while let Ok(Some(head)) = http::read_head(&mut r) {
            let headers = http::parse_headers(&head[1..]).unwrap();
            let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
            let mut body = Vec::new();
            if get("transfer-encoding").is_some() {
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    let n = http::parse_chunk_size(&line).unwrap();
                    if n == 0 {
                        r.read_line(&mut line).unwrap();
                        break;
                    }
                    let mut c = vec![0; n as usize + 2];
                    r.read_exact(&mut c).unwrap();
                    body.extend_from_slice(&c[..n as usize]);
                }
            } else if let Some(n) = get("content-length") {
                let mut c = vec![0; n.parse().unwrap()];
                r.read_exact(&mut c).unwrap();
                body = c;
            }
            let payload = testkit::noise(body.len() as u64, 3000);
            let mut out = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Got: {}\r\n\r\n", body.len());
            for c in payload.chunks(1000) {
                out.push_str(&format!("{:x};ext=1\r\n", c.len()));
                w.write_all(out.as_bytes()).unwrap();
                out.clear();
                w.write_all(c).unwrap();
                out.push_str("\r\n");
            }
            out.push_str("0\r\nX-Trailer: 1\r\n\r\n");
            w.write_all(out.as_bytes()).unwrap();
        }
    });
    (addr, handle)
}

#[test]
fn proxy_chunked_framing_without_registry() {
    let (upstream, server) = chunked_upstream();
    let proxy = FaultProxy::start(&upstream);
    let s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;

    // a chunked request body, with Expect: 100-continue answered by the proxy
    w.write_all(b"PATCH /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    r.read_line(&mut line).unwrap();
    w.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
    let resp = http::read_response(&mut r, false).unwrap();
    assert_eq!((resp.status, resp.complete), (200, true));
    assert_eq!(resp.header("x-got"), Some("11"));
    assert_eq!(resp.body, testkit::noise(11, 3000));

    // flip a byte in the second chunk, on the same connection
    proxy.add_rule(Rule::new("/flip", Fault::FlipByte(1500)));
    w.write_all(&http::format_request("x", "POST", "/flip", &[], b"abc")).unwrap();
    let resp = http::read_response(&mut r, false).unwrap();
    let mut want = testkit::noise(3, 3000);
    want[1500] ^= 0xff;
    assert_eq!((resp.complete, resp.body), (true, want));

    // cut inside the third chunk
    proxy.add_rule(Rule::new("/cut", Fault::CutAfter(2100)));
    w.write_all(&http::format_request("x", "GET", "/cut", &[], &[])).unwrap();
    let resp = http::read_response(&mut r, false).unwrap();
    assert_eq!((resp.complete, resp.body), (false, testkit::noise(0, 2100)));
    assert_eq!(proxy.body_bytes_forwarded(), 3000 + 3000 + 2100);
    let log: Vec<_> = proxy.requests().into_iter().map(|(m, p, s)| format!("{m} {p} {s}")).collect();
    assert_eq!(log, ["PATCH /up 200", "POST /flip 200", "GET /cut 200"]);
    drop(proxy);
    server.join().unwrap();
}

#[test]
fn proxy_stops_within_bounded_time() {
    let (upstream, _server) = chunked_upstream();
    let proxy = FaultProxy::start(&upstream);
    proxy.add_rule(Rule::new("/", Fault::Stall { after: 10, for_: Duration::from_secs(600) }));
    let addr = proxy.addr();
    let client = thread::spawn(move || http::get(&addr, "/stall").unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.body_bytes_forwarded() < 10 {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    let addr = proxy.addr();
    drop(proxy);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let r = client.join().unwrap();
    assert_eq!((r.complete, r.body.len()), (false, 10));
    assert!(TcpStream::connect(addr).is_err(), "listener closed");
}
