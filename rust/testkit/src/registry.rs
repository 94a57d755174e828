//! A real CNCF distribution registry (Debian bookworm's `docker-registry`, 2.8) for pull and push tests,
//! started by the test on `127.0.0.1` on a free port with its own configuration, storage and log in a
//! temporary directory, and filled with `skopeo copy`.
//!
//! The package is never installed: its postinst would start the packaged service on `0.0.0.0:5000`. It is
//! downloaded (`apt-get download`) into a cache directory and unpacked there (`dpkg-deb -x`), once per
//! machine, under a file lock, since several test binaries start registries in parallel.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{self, Response};

/// How long the registry may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `skopeo copy` may take.
const SKOPEO_TIMEOUT: Duration = Duration::from_secs(180);

/// `Accept` for manifests: Docker schema 2 and OCI, images and lists.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// What the registry is started with.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate (IP SAN 127.0.0.1, DNS localhost) from a test CA made for this
    /// registry; see [`Registry::ca_cert_path`] and [`Registry::cert_dir`].
    pub tls: bool,
    /// Require HTTP basic auth for this user and password (a bcrypt htpasswd file).
    pub htpasswd: Option<(String, String)>,
}

/// The manifest format `skopeo copy --format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// Docker image manifest schema 2 (`v2s2`).
    V2s2,
    /// OCI image manifest (`oci`).
    Oci,
}

/// The layer compression `skopeo copy --dest-compress-format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

/// How to push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// `--format`; `None`: skopeo's choice (the source's type, with fallbacks).
    pub format: Option<ManifestFormat>,
    /// `--dest-compress-format`; `None`: skopeo's default (gzip).
    pub compress: Option<Compression>,
    /// Push to this `host:port` instead of the registry's own address, e.g. a
    /// [`FaultProxy`](crate::fault_proxy::FaultProxy) in front of it (plain HTTP only).
    pub via: Option<String>,
}

/// A running registry; killed and its directory removed on drop.
pub struct Registry {
    child: Child,
    /// `None` only while a failed start hands the directory to the next try.
    dir: Option<tempfile::TempDir>,
    addr: String,
    tls: bool,
    creds: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers (200, or 401 with auth); panics with the
    /// registry's log if it does not within 30 s.
    pub fn start(opts: RegistryOptions) -> Registry {
        let bin = registry_binary();
        let mut dir = tempfile::Builder::new().prefix("be-registry-").tempdir().expect("registry temp dir");
        let storage = dir.path().join("storage");
        fs::create_dir(&storage).expect("registry storage dir");
        if opts.tls {
            make_certs(dir.path());
        }
        if let Some((user, pass)) = &opts.htpasswd {
            let htpasswd = ensure_tool("htpasswd", "apache2-utils");
            let out = run(
                Command::new(htpasswd)
                    .arg("-B")
                    .arg("-b")
                    .arg("-c")
                    .arg(dir.path().join("htpasswd"))
                    .arg(user)
                    .arg(pass),
                None,
                Duration::from_secs(30),
            );
            assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The port is free when chosen but may be taken before the registry binds it: try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            fs::write(&config, config_yaml(dir.path(), &addr, &opts)).expect("write registry config");
            let log_path = dir.path().join("registry.log");
            let log = File::create(&log_path).expect("registry log");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .current_dir(dir.path());
            // The registry takes REGISTRY_* variables as configuration overrides: none from outside.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let mut reg = Registry { child, dir: Some(dir), addr, tls: opts.tls, creds: opts.htpasswd.clone() };
            match reg.wait_ready() {
                Ok(()) => return reg,
                Err(log) if log.contains("address already in use") => {
                    last_log = log;
                    dir = reg.into_dir();
                }
                Err(log) => panic!("registry did not start:\n{log}"),
            }
        }
        panic!("registry did not start (no free port):\n{last_log}");
    }

    /// Stops the process and hands back the directory, for another try.
    fn into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        self.dir.take().expect("registry dir")
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("registry dir").path()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls `GET /v2/`; on failure returns the log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("registry exited with {status}; log:\n{}", self.log()));
            }
            let last = match self.try_request("GET", "/v2/", &[], Duration::from_secs(5)) {
                Ok(r) if r.status == 200 || r.status == 401 => return Ok(()),
                Ok(r) => format!("GET /v2/ answered {}", r.status),
                Err(e) => format!("GET /v2/: {e}"),
            };
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("registry not ready after {READY_TIMEOUT:?} ({last}); log:\n{}", self.log()));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// The filesystem driver's root directory (blobs under `docker/registry/v2/blobs/sha256/`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir().join("storage")
    }

    /// The test CA's certificate (PEM) when started with `tls`.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir().join("ca/ca.crt"))
    }

    /// A directory holding only `ca.crt`, as `skopeo --dest-cert-dir` or `/etc/docker/certs.d/HOST/` want it.
    pub fn cert_dir(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir().join("ca"))
    }

    /// The user and password when started with `htpasswd`.
    pub fn creds(&self) -> Option<(String, String)> {
        self.creds.clone()
    }

    /// The registry's log (level warn; stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("registry.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Pushes a docker-archive tar to `repo:tag` (`skopeo copy docker-archive:PATH docker://ADDR/REPO:TAG`).
    pub fn push_archive(&self, archive: &Path, repo_tag: &str) {
        self.push_with(&format!("docker-archive:{}", archive.display()), repo_tag, &PushOptions::default());
    }

    /// Pushes an OCI archive tar to `repo:tag`.
    pub fn push_oci_archive(&self, archive: &Path, repo_tag: &str) {
        self.push_with(&format!("oci-archive:{}", archive.display()), repo_tag, &PushOptions::default());
    }

    /// `skopeo copy` from `source` (any skopeo source: `docker-archive:PATH`, `oci-archive:PATH`, `oci:DIR`…)
    /// to `repo_tag` in this registry, with its credentials and CA; panics with skopeo's output on failure.
    pub fn push_with(&self, source: &str, repo_tag: &str, opts: &PushOptions) {
        if let Err(e) = self.try_push_with(source, repo_tag, opts) {
            panic!("{e}");
        }
    }

    /// [`push_with`](Self::push_with) that returns skopeo's failure instead of panicking.
    pub fn try_push_with(&self, source: &str, repo_tag: &str, opts: &PushOptions) -> Result<(), String> {
        let skopeo = ensure_tool("skopeo", "skopeo");
        let mut cmd = Command::new(skopeo);
        cmd.args(["--insecure-policy", "copy", "--quiet"]);
        match (&opts.via, self.cert_dir()) {
            (None, Some(certs)) => {
                cmd.arg("--dest-tls-verify=true").arg("--dest-cert-dir").arg(certs);
            }
            _ => {
                cmd.arg("--dest-tls-verify=false");
            }
        }
        if let Some((u, p)) = &self.creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        match opts.format {
            Some(ManifestFormat::V2s2) => cmd.args(["--format", "v2s2"]),
            Some(ManifestFormat::Oci) => cmd.args(["--format", "oci"]),
            None => &mut cmd,
        };
        match opts.compress {
            Some(Compression::Gzip) => cmd.args(["--dest-compress-format", "gzip"]),
            Some(Compression::Zstd) => cmd.args(["--dest-compress-format", "zstd"]),
            None => &mut cmd,
        };
        let dest = opts.via.clone().unwrap_or_else(|| self.addr.clone());
        cmd.arg(source).arg(format!("docker://{dest}/{repo_tag}"));
        let out = run(&mut cmd, None, SKOPEO_TIMEOUT);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "skopeo copy {source} -> {dest}/{repo_tag} failed ({}):\n{}{}\nregistry log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ))
        }
    }

    /// One request to the registry with its credentials, over TLS when it serves TLS (through
    /// `openssl s_client`, verifying the certificate against the test CA).
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        self.try_request(method, target, headers, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{method} {} {target}: {e}\nregistry log:\n{}", self.url(), self.log()))
    }

    fn try_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> io::Result<Response> {
        let auth = self.creds.as_ref().map(|(u, p)| format!("Basic {}", http::base64(format!("{u}:{p}").as_bytes())));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            if !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
                h.push(("Authorization", a));
            }
        }
        h.push(("Connection", "close"));
        if !self.tls {
            let mut conn = http::Conn::connect_timeout(&self.addr, timeout)?;
            return conn.send(method, target, &h, &[]);
        }
        let req = http::format_request(&self.addr, method, target, &h, &[]);
        let ca = self.ca_cert_path().expect("tls");
        let out = run(
            Command::new("openssl")
                .args(["s_client", "-quiet", "-connect", &self.addr, "-verify_ip", "127.0.0.1"])
                .arg("-CAfile")
                .arg(ca)
                .arg("-verify_return_error"),
            Some(&req),
            timeout,
        );
        if out.stdout.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("openssl s_client: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        http::read_response(&mut BufReader::new(&out.stdout[..]), method.eq_ignore_ascii_case("HEAD"))
    }

    /// The manifest `repo:reference` (a tag or a digest): its `Content-Type` and bytes; panics unless 200.
    pub fn manifest(&self, repo: &str, reference: &str) -> (String, Vec<u8>) {
        let r = self.request("GET", &format!("/v2/{repo}/manifests/{reference}"), &[("Accept", MANIFEST_ACCEPT)]);
        assert_eq!(r.status, 200, "GET manifest {repo}:{reference}: {}", String::from_utf8_lossy(&r.body));
        (r.header("content-type").unwrap_or_default().to_string(), r.body)
    }

    /// The blob `digest` ("sha256:…") of `repo`; panics unless 200.
    pub fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let r = self.request("GET", &format!("/v2/{repo}/blobs/{digest}"), &[]);
        assert_eq!(r.status, 200, "GET blob {repo}@{digest}");
        assert!(r.complete, "GET blob {repo}@{digest}: short body");
        r.body
    }

    /// Whether `HEAD /v2/REPO/blobs/DIGEST` finds the blob (200: true, 404: false, anything else panics).
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let r = self.request("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[]);
        match r.status {
            200 => true,
            404 => false,
            s => panic!("HEAD blob {repo}@{digest}: {s}"),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config_yaml(dir: &Path, addr: &str, opts: &RegistryOptions) -> String {
    let mut c = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n  secret: balena-engine-testkit\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
        storage = dir.join("storage").display(),
    );
    if opts.tls {
        c.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("tls/server.crt").display(),
            dir.join("tls/server.key").display()
        ));
    }
    if opts.htpasswd.is_some() {
        c.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: balena-engine-test\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    c
}

/// A test CA (`ca/ca.crt`, key in `tls/`) and a server certificate it signs for IP 127.0.0.1 and DNS
/// localhost (`tls/server.crt`, `tls/server.key`); P-256 keys, valid for 2 days.
fn make_certs(dir: &Path) {
    let tls = dir.join("tls");
    let ca = dir.join("ca");
    fs::create_dir_all(&tls).expect("tls dir");
    fs::create_dir_all(&ca).expect("ca dir");
    fs::write(
        tls.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    let steps: [Vec<&str>; 3] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "tls/ca.key",
            "-out",
            "ca/ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=balena-engine test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        vec![
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "tls/server.key",
            "-out",
            "tls/server.csr",
            "-subj",
            "/CN=localhost",
        ],
        vec![
            "x509",
            "-req",
            "-in",
            "tls/server.csr",
            "-CA",
            "ca/ca.crt",
            "-CAkey",
            "tls/ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "tls/server.ext",
            "-out",
            "tls/server.crt",
        ],
    ];
    for args in steps {
        let out = run(Command::new("openssl").args(&args).current_dir(dir), None, Duration::from_secs(30));
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// Runs `cmd` with `input` on stdin (or none), capturing stdout and stderr; killed after `timeout`.
pub fn run(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdin = child.stdin.take();
    let input = input.map(<[u8]>::to_vec);
    let writer = thread::spawn(move || {
        if let (Some(mut s), Some(i)) = (stdin, input) {
            let _ = s.write_all(&i);
        }
    });
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().expect("wait");
            eprintln!("killed after {timeout:?}: {cmd:?}");
            break s;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    Output { status, stdout: out_reader.join().unwrap_or_default(), stderr: err_reader.join().unwrap_or_default() }
}

/// Where the registry package is unpacked: `/var/cache/balena-engine-test/registry` as root, else
/// `~/.cache/balena-engine/registry`.
fn cache_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/cache/balena-engine-test/registry")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".cache/balena-engine/registry")
    }
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock(#[allow(dead_code)] File);

fn lock(path: &Path) -> FileLock {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    loop {
        // SAFETY: a valid open descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return FileLock(f);
        }
        let e = io::Error::last_os_error();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "flock {}: {e}", path.display());
    }
}

/// `usr/bin/docker-registry` unpacked from Debian's `docker-registry` package (downloaded once per machine).
pub fn registry_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cache = cache_dir();
        fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("create {}: {e}", cache.display()));
        let root = cache.join("root");
        let bin = root.join("usr/bin/docker-registry");
        if bin.exists() {
            return bin;
        }
        let _lock = lock(&cache.join("install.lock"));
        if bin.exists() {
            return bin;
        }
        let download = |cache: &Path| {
            run(
                Command::new("apt-get").args(["download", "-q", "docker-registry"]).current_dir(cache),
                None,
                Duration::from_secs(300),
            )
        };
        let debs = |cache: &Path| -> Vec<PathBuf> {
            fs::read_dir(cache)
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                        .collect()
                })
                .unwrap_or_default()
        };
        for d in debs(&cache) {
            let _ = fs::remove_file(d);
        }
        let mut out = download(&cache);
        if !out.status.success() {
            let _apt = lock(&cache.join("apt.lock"));
            let upd = run(Command::new("apt-get").args(["update", "-qq"]), None, Duration::from_secs(300));
            assert!(upd.status.success(), "apt-get update: {}", String::from_utf8_lossy(&upd.stderr));
            out = download(&cache);
        }
        assert!(out.status.success(), "apt-get download docker-registry: {}", String::from_utf8_lossy(&out.stderr));
        let deb = debs(&cache).into_iter().next().expect("downloaded docker-registry .deb");
        let tmp = cache.join("root.tmp");
        let _ = fs::remove_dir_all(&tmp);
        let x = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp), None, Duration::from_secs(120));
        assert!(x.status.success(), "dpkg-deb -x {}: {}", deb.display(), String::from_utf8_lossy(&x.stderr));
        assert!(tmp.join("usr/bin/docker-registry").exists(), "{} has no usr/bin/docker-registry", deb.display());
        let _ = fs::remove_dir_all(&root);
        fs::rename(&tmp, &root).expect("rename unpacked registry");
        let _ = fs::remove_file(&deb);
        bin
    })
    .clone()
}

/// `/usr/bin/BIN` (or `/usr/sbin`, `/bin`), installing Debian package `package` with the project's apt helper
/// (`scripts/lib/apt.sh`'s `ensure_pkgs`) when missing; installs are serialised across processes.
pub fn ensure_tool(bin: &str, package: &str) -> PathBuf {
    let find =
        || ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().map(|d| Path::new(d).join(bin)).find(|p| p.exists());
    if let Some(p) = find() {
        return p;
    }
    let cache = cache_dir();
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("create {}: {e}", cache.display()));
    let _lock = lock(&cache.join("apt.lock"));
    if let Some(p) = find() {
        return p;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = run(
        Command::new("bash")
            .args(["-c", &format!("source scripts/lib/apt.sh && ensure_pkgs {package}")])
            .current_dir(repo),
        None,
        Duration::from_secs(600),
    );
    assert!(out.status.success(), "installing {package} failed: {}", String::from_utf8_lossy(&out.stderr));
    find().unwrap_or_else(|| panic!("{package} installed but no {bin}"))
}
