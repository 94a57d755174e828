//! The daemon driven by the real docker CLI: what a user types works, and prints what docker prints.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::archive::{app, archive_of, layer, Image};
use common::{json_lines, read, Daemon};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn version_negotiates_and_shows_the_server() {
    let d = Daemon::start();
    let v = json(&d.docker_ok(&["version", "--format", "{{json .}}"]));
    let server = &v["Server"];
    assert_eq!(server["Version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert_eq!(server["ApiVersion"], "1.45");
    assert_eq!(server["MinAPIVersion"], "1.24");
    assert_eq!(server["Os"], "linux");
    // The client talks at most our version (a 28.x client is at 1.50 and negotiates down via /_ping).
    let client_api: f64 = v["Client"]["ApiVersion"].as_str().unwrap().parse().unwrap();
    assert!(client_api <= 1.45, "client did not negotiate down: {}", v["Client"]["ApiVersion"]);
    let plain = d.docker_ok(&["version"]);
    assert!(plain.contains("Server: balenaEngine"), "{plain}");
    assert!(plain.contains("API version:      1.45 (minimum version 1.24)"), "{plain}");
}

#[test]
fn info_reports_real_figures() {
    let d = Daemon::start();
    d.load(&app("app:1", 2).archive());
    let info = json(&d.docker_ok(&["info", "--format", "{{json .}}"]));
    assert_eq!(info["Images"], 1, "{info}");
    assert_eq!(info["Containers"], 0);
    assert!(info["NCPU"].as_i64().unwrap() >= 1);
    assert!(info["MemTotal"].as_i64().unwrap() > 0);
    assert_eq!(info["Driver"], "overlay");
    assert_eq!(info["DockerRootDir"], d.root.display().to_string());
    assert_eq!(info["ServerVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["CgroupDriver"], "cgroupfs");
    assert_eq!(info["LoggingDriver"], "json-file");
    let cg = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" };
    assert_eq!(info["CgroupVersion"], cg);
    let machine = std::process::Command::new("uname").arg("-m").output().unwrap().stdout;
    assert_eq!(info["Architecture"], String::from_utf8(machine).unwrap().trim());
    assert!(!info["KernelVersion"].as_str().unwrap().is_empty());
    assert!(!info["Name"].as_str().unwrap().is_empty());
    let text = d.docker_ok(&["info"]);
    assert!(text.contains("Storage Driver: overlay") && text.contains("Images: 1"), "{text}");
}

#[test]
fn load_and_list_like_docker() {
    let d = Daemon::start();
    let one = app("app:1", 2);
    let out = d.load(&one.archive());
    assert_eq!(out.trim(), "Loaded image: app:1");

    // Same tag, new content: the old image keeps its ID but loses the tag (dangling).
    let two = app("app:1", 3);
    let out = d.load(&two.archive());
    assert!(out.contains("Loaded image: app:1"), "{out}");

    let table = d.docker_ok(&["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(table.contains(&two.id()[7..19]) && table.contains(&one.id()[7..19]), "{table}");
    assert!(table.contains("<none>"), "{table}");

    let rows = json_lines(&d.docker_ok(&["images", "--format", "{{json .}}"]));
    let tagged = rows.iter().find(|r| r["Tag"] == "1").unwrap();
    assert_eq!(tagged["Repository"], "app");
    assert_eq!(tagged["ID"], two.id()[7..19]);
    assert!(tagged["CreatedAt"].as_str().unwrap().starts_with("2024-05-01 12:00:00"), "{tagged}");

    let ids = d.docker_ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
    let ids_full = d.docker_ok(&["images", "-q", "--no-trunc"]);
    assert!(ids_full.lines().any(|l| l == one.id()), "{ids_full}");

    let dangling = d.docker_ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert_eq!(dangling.trim(), one.id());
    let not_dangling = d.docker_ok(&["images", "-q", "--no-trunc", "--filter", "dangling=false"]);
    assert_eq!(not_dangling.trim(), two.id());
    let by_ref = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=app:*"]);
    assert_eq!(by_ref.trim(), "app:1");
    let none = d.docker_ok(&["images", "-q", "--filter", "reference=other"]);
    assert_eq!(none.trim(), "");
    let err = d.docker_err(&["images", "--filter", "colour=blue"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
}

#[test]
fn label_filter_and_several_images_in_one_archive() {
    let d = Daemon::start();
    let mut a = app("app:1", 2);
    a.labels = serde_json::json!({"tier": "web"});
    let b = Image::new("localhost/db:2", vec![layer(7, 2000)]);
    let out = d.load(&archive_of(&[a.clone(), b.clone()]));
    assert!(out.contains("Loaded image: app:1") && out.contains("Loaded image: localhost/db:2"), "{out}");
    let web = d.docker_ok(&["images", "-q", "--no-trunc", "--filter", "label=tier=web"]);
    assert_eq!(web.trim(), a.id());
    let any_tier = d.docker_ok(&["images", "-q", "--no-trunc", "--filter", "label=tier"]);
    assert_eq!(any_tier.trim(), a.id());
}

#[test]
fn inspect_and_tag_with_names_containing_slashes() {
    let d = Daemon::start();
    let img = app("localhost/team/app:1", 2);
    d.load(&img.archive());
    let doc = json(&d.docker_ok(&["image", "inspect", "localhost/team/app:1"]));
    let doc = &doc[0];
    assert_eq!(doc["Id"], img.id());
    assert_eq!(doc["RepoTags"], serde_json::json!(["localhost/team/app:1"]));
    assert_eq!(doc["Os"], "linux");
    assert_eq!(doc["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(doc["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let id = d.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &img.id()[7..19]]);
    assert_eq!(id.trim(), img.id());

    d.docker_ok(&["tag", "localhost/team/app:1", "registry.local:5000/x/app:stable"]);
    d.docker_ok(&["tag", &img.id()[7..19], "plain"]);
    let tags = json(&d.docker_ok(&["image", "inspect", "--format", "{{json .RepoTags}}", "plain"]));
    assert_eq!(
        tags,
        serde_json::json!(["localhost/team/app:1", "plain:latest", "registry.local:5000/x/app:stable"])
    );
    let err = d.docker_err(&["image", "inspect", "nope:1"]);
    assert!(err.contains("No such image: nope:1"), "{err}");
    let err = d.docker_err(&["tag", "nope:1", "x:1"]);
    assert!(err.contains("No such image: nope:1"), "{err}");
}

#[test]
fn save_round_trips_through_another_daemon() {
    let d = Daemon::start();
    let a = app("app:1", 2);
    let b = Image::new("localhost/db:2", vec![layer(1, 4000)]);
    d.load(&archive_of(&[a.clone(), b.clone()]));
    let out = d.dir.path().join("saved.tar");
    d.docker_ok(&["save", "-o", out.to_str().unwrap(), "app:1", "localhost/db:2"]);
    let saved = read(&out);
    assert!(saved.len() > 7000, "archive too small: {}", saved.len());

    let e = Daemon::start();
    let loaded = e.docker_ok(&["load", "-i", out.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: app:1") && loaded.contains("Loaded image: localhost/db:2"), "{loaded}");
    let id = e.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "app:1"]);
    assert_eq!(id.trim(), a.id());
    let id = e.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "localhost/db:2"]);
    assert_eq!(id.trim(), b.id());

    // Saved again, the archive is byte for byte the same.
    let again = e.dir.path().join("again.tar");
    e.docker_ok(&["save", "-o", again.to_str().unwrap(), "app:1", "localhost/db:2"]);
    assert!(read(&again) == saved, "second save differs");

    // To stdout as well (`docker save IMAGE > file`).
    let piped = d.docker(&["save", "app:1"]);
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    assert!(piped.stdout.len() > 7000);
    let err = d.docker_err(&["save", "-o", out.to_str().unwrap(), "nope:1"]);
    assert!(err.contains("No such image: nope:1"), "{err}");
}

#[test]
fn rmi_like_docker() {
    let d = Daemon::start();
    let img = app("app:1", 2);
    d.load(&img.archive());
    d.docker_ok(&["tag", "app:1", "app:2"]);

    // By ID, with two tags: refused without -f, as docker does.
    let err = d.docker_err(&["rmi", &img.id()[7..19]]);
    assert!(err.contains("conflict: unable to delete") && err.contains("must be forced"), "{err}");

    // By tag: only that tag goes.
    let out = d.docker_ok(&["rmi", "app:2"]);
    assert_eq!(out.trim(), "Untagged: app:2");
    // The last tag takes the image with it.
    let out = d.docker_ok(&["rmi", "app:1"]);
    assert_eq!(out.trim(), format!("Untagged: app:1\nDeleted: {}", img.id()));
    assert_eq!(d.docker_ok(&["images", "-q"]).trim(), "");

    // -f removes an image with several tags by ID.
    d.load(&img.archive());
    d.docker_ok(&["tag", "app:1", "app:2"]);
    let out = d.docker_ok(&["rmi", "-f", &img.id()]);
    assert!(out.contains("Untagged: app:1") && out.contains("Untagged: app:2") && out.contains("Deleted:"), "{out}");
    let err = d.docker_err(&["rmi", "nope:1"]);
    assert!(err.contains("No such image: nope:1"), "{err}");
    assert!(std::fs::read_dir(d.root.join("layers")).unwrap().next().is_none(), "layers left behind");
}

#[test]
fn system_df_counts_images_and_shared_layers() {
    let d = Daemon::start();
    let a = app("app:1", 2);
    let b = app("app:2", 3);
    d.load(&archive_of(&[a, b]));
    let df = d.docker_ok(&["system", "df"]);
    let images_line = df.lines().find(|l| l.starts_with("Images")).unwrap();
    assert!(images_line.split_whitespace().nth(1) == Some("2"), "{df}");
    assert!(df.contains("Containers") && df.contains("Local Volumes"), "{df}");
    let verbose = d.docker_ok(&["system", "df", "-v"]);
    assert!(verbose.contains("SHARED SIZE"), "{verbose}");
    // Both share the base layer: its tar is their shared size.
    let shared = format!("{}kB", layer(1, 4000).len() as f64 / 1000.0);
    let rows: Vec<&str> = verbose.lines().filter(|l| l.starts_with("app ")).collect();
    assert!(rows.len() == 2 && rows.iter().all(|l| l.contains(&shared)), "expected shared {shared}:\n{verbose}");
}

#[test]
fn events_show_loads_tags_and_removals() {
    let d = Daemon::start();
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 1;
    let img = app("app:1", 2);
    d.load(&img.archive());
    d.docker_ok(&["tag", "app:1", "app:2"]);
    d.docker_ok(&["rmi", "app:2"]);
    let until = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 1;
    let out = d.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--format",
        "{{json .}}",
    ]);
    let events = json_lines(&out);
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["Action"].as_str().unwrap().to_owned(), e["Actor"]["Attributes"]["name"].as_str().unwrap().to_owned()))
        .collect();
    let want = [("load", img.id()), ("tag", "app:1".into()), ("tag", "app:2".into()), ("untag", "app:2".into())];
    let want: Vec<(String, String)> = want.iter().map(|(a, n)| (a.to_string(), n.clone())).collect();
    assert_eq!(seen, want, "{out}");
    assert!(events.iter().all(|e| e["Type"] == "image" && e["Actor"]["ID"] == img.id()));

    // Filtered by event type.
    let out = d.docker_ok(&["events", "--since", &since.to_string(), "--until", &until.to_string(), "--filter", "event=tag"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().all(|l| l.contains("image tag")), "{out}");
}
