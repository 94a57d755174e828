//! `balena-engine --data-root DIR pull / push` (direct mode, no daemon) against a real registry (Debian's
//! docker-registry, see testkit::registry); a direct-mode pull killed with SIGKILL in the middle: no half
//! image, and the next writer cleans up what it left; and `pull` / `push` as the daemon's client with
//! credentials from docker's client configuration. Root only (the registry fixture installs packages).

mod common;

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{base_layer, digest, good_image, names_in, noise, Engine, ImageSpec, TarBuf};
use testkit::fault_proxy::{Fault, FaultProxy, Rule};
use testkit::registry::{run, Registry, RegistryOptions};

const TIMEOUT: Duration = Duration::from_secs(120);

/// An image whose second layer holds `size` incompressible bytes.
fn image(tag: &str, seed: u64, size: usize) -> ImageSpec {
    let mut top = TarBuf::new();
    top.dir("data/").file("data/blob.bin", &noise(seed, size));
    ImageSpec::new(tag, vec![base_layer(seed), top.finish()])
}

fn push(reg: &Registry, eng: &Engine, img: &ImageSpec, repo_tag: &str) {
    let path = eng.write_scratch(&format!("{}.tar", repo_tag.replace(['/', ':'], "_")), &img.docker());
    reg.push_archive(&path, repo_tag);
}

/// The binary on `eng`'s data root, killed after `TIMEOUT`.
fn be(eng: &Engine, args: &[&str]) -> Output {
    run(&mut eng.cmd(args), None, TIMEOUT)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn be_ok(eng: &Engine, args: &[&str]) -> String {
    let o = be(eng, args);
    assert!(o.status.success(), "{args:?} failed ({}):\n{}", o.status, text(&o));
    text(&o)
}

fn inspect(eng: &Engine, name: &str) -> serde_json::Value {
    let out = be_ok(eng, &["image", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v[0].clone()
}

fn leases(eng: &Engine) -> BTreeSet<String> {
    names_in(&eng.root.join("leases"))
}

/// Layer dirs every listed image needs.
fn wanted_layers(eng: &Engine, specs: &[&ImageSpec]) -> BTreeSet<String> {
    let ids: BTreeSet<String> = eng.images().into_iter().map(|(id, _, _)| id).collect();
    specs.iter().filter(|s| ids.contains(&s.id())).flat_map(|s| s.chain_ids()).collect()
}

#[test]
fn direct_mode_pull_list_and_push() {
    if !testkit::root("registry tests") {
        return;
    }
    let reg = Registry::start(RegistryOptions::default());
    let addr = reg.addr();
    let eng = Engine::new();
    let app = image("app:1", 1, 400_000);
    push(&reg, &eng, &app, "app:1");
    let (_, manifest) = reg.manifest("app", "1");
    let mdigest = digest(&manifest);

    let name = format!("{addr}/app:1");
    let t = Instant::now();
    let out = be_ok(&eng, &["pull", &name]);
    eprintln!("direct pull: {:?}", t.elapsed());
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    assert!(out.contains(&format!("Digest: {mdigest}")), "{out}");
    assert_eq!(eng.images(), [(app.id(), format!("{addr}/app"), "1".to_owned())]);
    let table = be_ok(&eng, &["images"]);
    assert!(table.contains(&format!("{addr}/app")) && table.contains(&app.id()[7..19]), "{table}");
    let ins = inspect(&eng, &name);
    assert_eq!(ins["RepoDigests"], serde_json::json!([format!("{addr}/app@{mdigest}")]));
    assert_eq!(eng.tmp_entries(), BTreeSet::new());
    assert_eq!(eng.layer_dirs(), app.chain_ids().into_iter().collect());

    let out = be_ok(&eng, &["pull", &name]);
    assert!(out.contains(&format!("Status: Image is up to date for {name}")), "{out}");

    // -q prints the name only.
    let out = be(&eng, &["pull", "-q", &name]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), name);

    // A missing tag: one error line, exit 1.
    let o = be(&eng, &["pull", &format!("{addr}/app:nope")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("manifest unknown"), "{stderr}");

    // Push of the pulled image elsewhere keeps the manifest; a loaded one lands with its config.
    be_ok(&eng, &["tag", &name, &format!("{addr}/copy:1")]);
    let out = be_ok(&eng, &["push", &format!("{addr}/copy:1")]);
    assert!(out.contains(&format!("digest: {mdigest}")), "{out}");
    assert_eq!(reg.manifest("copy", "1").1, manifest);
    eng.load_ok(&good_image().docker());
    be_ok(&eng, &["tag", "good:1", &format!("{addr}/good:1")]);
    be_ok(&eng, &["push", &format!("{addr}/good:1")]);
    let (_, m) = reg.manifest("good", "1");
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(m["config"]["digest"], good_image().id().as_str());

    // And pulled back into another store: the same image.
    let other = Engine::new();
    be_ok(&other, &["pull", &format!("{addr}/good:1")]);
    assert_eq!(other.images(), [(good_image().id(), format!("{addr}/good"), "1".to_owned())]);
}

/// SIGKILL in the middle of a direct-mode pull (the blob stalls at 1 MiB): no image, no layer, no blob of
/// it; the next writer empties `tmp/` and drops the dead pull's lease; a second pull completes.
#[test]
fn kill_9_mid_pull_leaves_no_half_image() {
    if !testkit::root("registry tests") {
        return;
    }
    let reg = Registry::start(RegistryOptions::default());
    let eng = Engine::new();
    let app = image("app:1", 2, 4 << 20);
    push(&reg, &eng, &app, "app:1");
    let (_, manifest) = reg.manifest("app", "1");
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let big = m["layers"][1]["digest"].as_str().unwrap().to_owned();
    assert!(m["layers"][1]["size"].as_u64().unwrap() > 4_000_000);

    // A store with an image already: its layers are what the pull leases meanwhile.
    let good = good_image();
    eng.load_ok(&good.docker());
    let before = eng.snapshot(&["good:1"]);

    let proxy = FaultProxy::start(&reg.addr());
    const AT: u64 = 1 << 20;
    proxy.add_rule(Rule::new(&big, Fault::Stall { after: AT, for_: Duration::from_secs(300) }));
    let name = format!("{}/app:1", proxy.addr());
    let mut child = eng.cmd(&["pull", &name]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let staged = |eng: &Engine| eng.tmp_entries().iter().any(|e| !names_in(&eng.root.join("tmp").join(e)).is_empty());
    while proxy.body_bytes_forwarded() < AT || !staged(&eng) {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the pull ended ({s}) before the stall; proxy saw {:?}", proxy.requests());
        }
        assert!(Instant::now() < deadline, "the pull did not reach the stall: {:?}", proxy.requests());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // let the unpacker write what it got
    let pull_lease = leases(&eng);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!eng.tmp_entries().is_empty(), "the pull had work in progress in tmp/");
    assert_eq!(pull_lease.len(), 1, "the pull leases the layers it may reuse: {pull_lease:?}");

    // Readers see the committed state: no trace of app:1.
    assert_eq!(eng.images(), before.images);
    let table = be_ok(&eng, &["images"]);
    assert!(!table.contains("app"), "{table}");
    assert_eq!(eng.layer_dirs(), before.layer_dirs, "no layer of the killed pull was installed");
    assert_eq!(names_in(&eng.root.join("blobs/sha256")), before.blobs);
    assert!(inspect_fails(&eng, &name));

    // The next writer (a tag) empties tmp/ and releases the dead pull's lease.
    be_ok(&eng, &["tag", "good:1", "good:kept"]);
    assert_eq!(eng.tmp_entries(), BTreeSet::new(), "tmp/ not emptied by the next writer");
    assert_eq!(leases(&eng), BTreeSet::new(), "the killed pull's lease outlived it");
    be_ok(&eng, &["rmi", "good:kept"]);
    eng.assert_unchanged(&before);

    // The same pull again, through the same proxy (the stall was for one request): it completes.
    let out = be_ok(&eng, &["pull", &name]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    assert_eq!(inspect(&eng, &name)["Id"], app.id().as_str());
    assert_eq!(eng.tmp_entries(), BTreeSet::new());
    assert_eq!(leases(&eng), BTreeSet::new());
    assert_eq!(eng.layer_dirs(), wanted_layers(&eng, &[&good, &app]));
    assert_eq!(eng.save(&["good:1"]), before.saves[0].1, "the image that was there is intact");

    // What the dead pull had leased goes once nothing else keeps it.
    be_ok(&eng, &["rmi", "good:1"]);
    assert_eq!(eng.layer_dirs(), app.chain_ids().into_iter().collect(), "layers kept by a stale lease");
}

fn inspect_fails(eng: &Engine, name: &str) -> bool {
    !be(eng, &["image", "inspect", name]).status.success()
}

/// `balena-engined` beside the CLI binary; built (`$CARGO build -p balena-engined`, same target dir and
/// profile) when missing, as tests/client.rs does.
fn daemon_bin() -> std::path::PathBuf {
    use std::path::Path;
    let dir = Path::new(common::BIN).parent().expect("the CLI binary has a directory");
    let path = dir.join("balena-engined");
    if path.is_file() {
        return path;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-p", "balena-engined"]).current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let up = dir.parent().expect("target/<profile>");
    if up.join("CACHEDIR.TAG").exists() {
        cmd.arg("--target-dir").arg(up);
    } else if let Some(root) = up.parent().filter(|r| r.join("CACHEDIR.TAG").exists()) {
        cmd.arg("--target-dir").arg(root).arg("--target").arg(up.file_name().unwrap());
    }
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let out = cmd.output().expect("running cargo build -p balena-engined");
    assert!(out.status.success(), "cargo build -p balena-engined failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(path.is_file(), "cargo build -p balena-engined did not produce {}", path.display());
    path
}

/// A daemon on a temporary socket and data root; killed on drop.
struct Daemon {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Daemon {
    fn start(bin: &std::path::Path) -> Daemon {
        let dir = tempfile::Builder::new().prefix("be-pull-").tempdir().unwrap();
        let child = std::process::Command::new(bin)
            .arg("-H")
            .arg(format!("unix://{}", dir.path().join("sock").display()))
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.cli(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "daemon did not answer:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The CLI as the daemon's client, with docker's client configuration in `docker-config/`.
    fn cli(&self, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(common::BIN);
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.path().join("sock").display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("BALENA_ENGINE_HOST")
            .env_remove("DOCKER_HOST");
        run(&mut c, None, TIMEOUT)
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(o.status.success(), "{args:?} failed ({}):\n{}\ndaemon log:\n{}", o.status, text(&o), self.log());
        text(&o)
    }

    /// What `docker login` writes: `auths.HOST.auth` = base64("user:password").
    fn login(&self, host: &str, user: &str, pass: &str) {
        let dir = self.dir.path().join("docker-config");
        std::fs::create_dir_all(&dir).unwrap();
        let auth = testkit::http::base64(format!("{user}:{pass}").as_bytes());
        let cfg = serde_json::json!({"auths": {host: {"auth": auth}}});
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `balena-engine pull / push` as the daemon's client: credentials from docker's client configuration go
/// in `X-Registry-Auth`; an error the daemon sends in the stream fails the command.
#[test]
fn daemon_client_pull_and_push_with_credentials() {
    if !testkit::root("registry tests") {
        return;
    }
    let bin = daemon_bin();
    let (user, pass) = ("tester", "pa:ss?w>rd");
    let reg = Registry::start(RegistryOptions { tls: false, htpasswd: Some((user.into(), pass.into())) });
    let addr = reg.addr();
    let scratch = Engine::new();
    let app = image("app:1", 3, 300_000);
    push(&reg, &scratch, &app, "team/app:1");
    let (_, manifest) = reg.manifest("team/app", "1");
    let mdigest = digest(&manifest);
    let d = Daemon::start(&bin);
    let name = format!("{addr}/team/app:1");

    // No credentials: the registry's refusal, exit 1.
    let o = d.cli(&["pull", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no basic auth credentials"), "{}", text(&o));

    d.login(&addr, user, pass);
    let o = d.cli(&["pull", &name]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    assert!(out.contains(&format!("Digest: {mdigest}")), "{out}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().last(), Some(name.as_str()), "{out}");
    let ins: serde_json::Value = serde_json::from_str(&d.cli_ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(ins[0]["Id"], app.id().as_str());
    assert_eq!(ins[0]["RepoDigests"], serde_json::json!([format!("{addr}/team/app@{mdigest}")]));
    let out = d.cli_ok(&["pull", &format!("{addr}/team/app@{mdigest}")]);
    assert!(out.contains("Image is up to date"), "{out}");

    // A missing tag: the in-band error, exit 1.
    let o = d.cli(&["pull", &format!("{addr}/team/app:nope")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("manifest unknown"), "{}", text(&o));

    // Push under another name: the same manifest.
    d.cli_ok(&["tag", &name, &format!("{addr}/team/copy:2")]);
    let out = d.cli_ok(&["push", &format!("{addr}/team/copy:2")]);
    assert!(out.contains(&format!("digest: {mdigest}")), "{out}");
    assert_eq!(reg.manifest("team/copy", "2").1, manifest);

    // Direct mode reads the same configuration.
    let eng = Engine::new();
    let mut c = eng.cmd(&["pull", &name]);
    c.env("DOCKER_CONFIG", d.dir.path().join("docker-config"));
    let o = run(&mut c, None, TIMEOUT);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(eng.images(), [(app.id(), format!("{addr}/team/app"), "1".to_owned())]);
}
