//! Volumes driven by the real docker CLI against the real daemon: `docker volume create / ls / inspect / rm /
//! prune`, labels and filters, `system df`, events, and volumes surviving a daemon restart.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{json_lines, Daemon};
use serde_json::{json, Value};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn names(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    v.sort();
    v
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn create_inspect_and_list_like_docker() {
    let d = Daemon::start();
    assert_eq!(d.docker_ok(&["volume", "create", "--label", "tier=db", "--label", "backup", "data"]).trim(), "data");
    // The old `--name` spelling and the explicit driver.
    assert_eq!(d.docker_ok(&["volume", "create", "-d", "local", "--name", "cache"]).trim(), "cache");
    let anon = d.docker_ok(&["volume", "create"]).trim().to_owned();
    assert!(anon.len() == 64 && anon.bytes().all(|b| b.is_ascii_hexdigit()), "{anon}");
    // Creating an existing volume returns it, as docker does.
    assert_eq!(d.docker_ok(&["volume", "create", "data"]).trim(), "data");

    let doc = json(&d.docker_ok(&["volume", "inspect", "data"]));
    let v = &doc[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"], json!({"tier": "db", "backup": ""}));
    assert_eq!(v["Options"], json!({}));
    let mountpoint = d.root.join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.display().to_string());
    assert!(mountpoint.is_dir());
    let created = v["CreatedAt"].as_str().unwrap();
    assert!(created.len() >= 20 && created.ends_with('Z'), "{created}");
    let anon_labels = d.docker_ok(&["volume", "inspect", "--format", "{{json .Labels}}", &anon]);
    assert_eq!(json(&anon_labels), json!({"com.docker.volume.anonymous": ""}));
    let err = d.docker_err(&["volume", "inspect", "nope"]);
    assert!(err.contains("no such volume"), "{err}");

    let table = d.docker_ok(&["volume", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("DRIVER") && lines[0].contains("VOLUME NAME"), "{table}");
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[1..].iter().all(|l| l.starts_with("local ")), "{table}");
    let mut all = vec!["cache".to_owned(), "data".to_owned(), anon.clone()];
    all.sort();
    assert_eq!(names(&d.docker_ok(&["volume", "ls", "-q"])), all);
    let rows = json_lines(&d.docker_ok(&["volume", "ls", "--format", "{{json .}}"]));
    let row = rows.iter().find(|r| r["Name"] == "data").unwrap();
    assert_eq!(row["Driver"], "local");
    assert_eq!(row["Mountpoint"], mountpoint.display().to_string());
    assert!(row["Labels"].as_str().unwrap().contains("tier=db"), "{row}");

    // Filters.
    let q = |f: &[&str]| {
        let mut args = vec!["volume", "ls", "-q"];
        for x in f {
            args.extend(["--filter", x]);
        }
        names(&d.docker_ok(&args))
    };
    assert_eq!(q(&["name=dat"]), ["data"]);
    assert_eq!(q(&["name=ca", "name=ta"]), Vec::<String>::new(), "every name filter must match");
    assert_eq!(q(&["label=tier"]), ["data"]);
    assert_eq!(q(&["label=tier=db"]), ["data"]);
    assert_eq!(q(&["label=tier=web"]), Vec::<String>::new());
    assert_eq!(q(&["label=tier", "label=backup"]), ["data"]);
    assert_eq!(q(&["label=com.docker.volume.anonymous"]), std::slice::from_ref(&anon));
    assert_eq!(q(&["driver=local"]), all);
    assert_eq!(q(&["driver=nfs"]), Vec::<String>::new());
    // No container uses any of them: all dangling.
    assert_eq!(q(&["dangling=true"]), all);
    assert_eq!(q(&["dangling=false"]), Vec::<String>::new());
    let err = d.docker_err(&["volume", "ls", "--filter", "colour=blue"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    let err = d.docker_err(&["volume", "ls", "--filter", "dangling=maybe"]);
    assert!(err.contains("invalid filter 'dangling=maybe'"), "{err}");
}

#[test]
fn bad_names_drivers_and_options_are_refused() {
    let d = Daemon::start();
    let err = d.docker_err(&["volume", "create", "no/slash"]);
    assert!(err.contains("\"no/slash\" includes invalid characters for a local volume name"), "{err}");
    let err = d.docker_err(&["volume", "create", "x"]);
    assert!(err.contains("includes invalid characters"), "{err}");
    let err = d.docker_err(&["volume", "create", "-d", "nfs", "share"]);
    assert!(err.contains("plugin \"nfs\" not found"), "{err}");
    let err = d.docker_err(&["volume", "create", "--opt", "type=tmpfs", "scratch"]);
    assert!(err.contains("takes no options (got type)"), "{err}");
    assert_eq!(d.docker_ok(&["volume", "ls", "-q"]).trim(), "");
    assert_eq!(std::fs::read_dir(d.root.join("volumes")).unwrap().count(), 0, "nothing left behind");
}

#[test]
fn rm_like_docker() {
    let d = Daemon::start();
    d.docker_ok(&["volume", "create", "one"]);
    d.docker_ok(&["volume", "create", "two"]);
    std::fs::write(d.root.join("volumes/one/_data/file"), b"payload").unwrap();
    assert_eq!(d.docker_ok(&["volume", "rm", "one"]).trim(), "one");
    assert!(!d.root.join("volumes/one").exists());
    let err = d.docker_err(&["volume", "rm", "one"]);
    assert!(err.contains("no such volume"), "{err}");
    // -f: a missing volume is fine.
    assert_eq!(d.docker_ok(&["volume", "rm", "-f", "one"]).trim(), "one");
    // Several at once; the missing one fails the command, the others go.
    let out = d.docker(&["volume", "rm", "two", "three"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("three"));
    assert_eq!(d.docker_ok(&["volume", "ls", "-q"]).trim(), "");
    // Raw API: 204, and 404 with docker's message.
    d.docker_ok(&["volume", "create", "four"]);
    assert_eq!(d.http("DELETE", "/v1.45/volumes/four").status, 204);
    let r = d.http("DELETE", "/v1.45/volumes/four");
    assert_eq!((r.status, r.message()), (404, "get four: no such volume".to_owned()));
    assert_eq!(d.http("DELETE", "/v1.45/volumes/four?force=1").status, 204);
}

#[test]
fn prune_removes_unused_anonymous_volumes_unless_told_all() {
    let d = Daemon::start();
    let anon = d.docker_ok(&["volume", "create"]).trim().to_owned();
    let anon_keep = d.docker_ok(&["volume", "create", "--label", "keep=yes"]).trim().to_owned();
    d.docker_ok(&["volume", "create", "--label", "keep=yes", "named-keep"]);
    d.docker_ok(&["volume", "create", "named"]);
    std::fs::write(d.root.join("volumes").join(&anon).join("_data/blob"), vec![0u8; 20_000]).unwrap();

    // Default (API ≥ 1.42): anonymous volumes only; label! spares some.
    let out = d.docker_ok(&["volume", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.contains("Deleted Volumes:") && out.contains(&anon), "{out}");
    assert!(out.contains("Total reclaimed space: 20kB"), "{out}");
    let mut left = vec![anon_keep.clone(), "named".to_owned(), "named-keep".to_owned()];
    left.sort();
    assert_eq!(names(&d.docker_ok(&["volume", "ls", "-q"])), left);

    // -a: named ones too, filtered by label.
    let out = d.docker_ok(&["volume", "prune", "-f", "-a", "--filter", "label=keep=yes"]);
    assert!(out.contains(&anon_keep) && out.contains("named-keep") && !out.contains("named\n"), "{out}");
    assert_eq!(names(&d.docker_ok(&["volume", "ls", "-q"])), ["named"]);
    let out = d.docker_ok(&["volume", "prune", "-f", "-a"]);
    assert!(out.contains("named"), "{out}");
    assert_eq!(d.docker_ok(&["volume", "ls", "-q"]).trim(), "");
    let out = d.docker_ok(&["volume", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");

    // Raw API.
    d.docker_ok(&["volume", "create", "old-api"]);
    let r = d.http_body("POST", "/v1.41/volumes/prune", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"VolumesDeleted": ["old-api"], "SpaceReclaimed": 0}));
    let r = d.http_body("POST", "/v1.45/volumes/prune?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D", &[], b"");
    assert_eq!((r.status, r.message()), (400, "invalid filter 'colour'".to_owned()));
}

#[test]
fn system_df_and_events_show_volumes() {
    let d = Daemon::start();
    let since = now_secs() - 1;
    d.docker_ok(&["volume", "create", "big"]);
    d.docker_ok(&["volume", "create", "small"]);
    std::fs::write(d.root.join("volumes/big/_data/blob"), vec![1u8; 50_000]).unwrap();
    let df = d.docker_ok(&["system", "df"]);
    let line = df.lines().find(|l| l.starts_with("Local Volumes")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((cols[2], cols[3]), ("2", "0"), "total 2, active 0:\n{df}");
    assert!(line.contains("50kB"), "{df}");
    let verbose = d.docker_ok(&["system", "df", "-v"]);
    let big = verbose.lines().find(|l| l.starts_with("big ")).unwrap_or_else(|| panic!("{verbose}"));
    assert!(big.contains("50kB") && big.split_whitespace().nth(1) == Some("0"), "{verbose}");
    d.docker_ok(&["volume", "rm", "small"]);
    d.docker_ok(&["volume", "prune", "-f", "-a"]);

    let until = now_secs() + 1;
    let out = d.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=volume",
        "--format",
        "{{json .}}",
    ]);
    let seen: Vec<(String, String)> = json_lines(&out)
        .iter()
        .map(|e| (e["Action"].as_str().unwrap().to_owned(), e["Actor"]["ID"].as_str().unwrap().to_owned()))
        .collect();
    let want = [("create", "big"), ("create", "small"), ("destroy", "small"), ("destroy", "big"), ("prune", "")];
    let want: Vec<(String, String)> = want.iter().map(|(a, n)| (a.to_string(), n.to_string())).collect();
    assert_eq!(seen, want, "{out}");
    let out = d.docker_ok(&["events", "--since", &since.to_string(), "--until", &until.to_string(), "--filter", "volume=big"]);
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn volumes_survive_a_daemon_restart() {
    let mut d = Daemon::start();
    d.docker_ok(&["volume", "create", "--label", "app=web", "persist"]);
    let anon = d.docker_ok(&["volume", "create"]).trim().to_owned();
    let before = json(&d.docker_ok(&["volume", "inspect", "persist", &anon]));
    std::fs::write(d.root.join("volumes/persist/_data/state.db"), b"precious").unwrap();
    assert!(d.stop().success());

    let e = Daemon::start_in(tempfile::tempdir().unwrap(), d.root.clone(), |_| {});
    let after = json(&e.docker_ok(&["volume", "inspect", "persist", &anon]));
    assert_eq!(after, before);
    assert_eq!(std::fs::read(e.root.join("volumes/persist/_data/state.db")).unwrap(), b"precious");
    let mut want = vec!["persist".to_owned(), anon];
    want.sort();
    assert_eq!(names(&e.docker_ok(&["volume", "ls", "-q"])), want);
    assert_eq!(names(&e.docker_ok(&["volume", "ls", "-q", "--filter", "label=app=web"])), ["persist"]);
}
