//! The API over raw HTTP: versioning, docker's error statuses and bodies, streams, and requests no client
//! should send.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::archive::{app, layer, Image};
use common::{http, json_lines, Daemon};

#[test]
fn versioned_and_unversioned_paths() {
    let d = Daemon::start();
    for path in ["/version", "/v1.45/version", "/v1.24/version", "/v1.41/version"] {
        let r = d.http("GET", path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["ApiVersion"], "1.45");
        assert_eq!(r.header("api-version"), Some("1.45"));
    }
    let r = d.http("GET", "/v1.99/version");
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "client version 1.99 is too new. Maximum supported API version is 1.45");
    let r = d.http("GET", "/v1.12/images/json");
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("client version 1.12 is too old. Minimum supported API version is 1.24"), "{}", r.text());
    // Not a version segment: just an unknown path.
    assert_eq!(d.http("GET", "/vx/version").status, 404);
    // Before 1.44 image summaries carry VirtualSize; from 1.44 they do not (as dockerd).
    d.http_body("POST", "/images/load?quiet=1", &[], &app("app:1", 2).archive());
    let old = d.http("GET", "/v1.43/images/json").json();
    let new = d.http("GET", "/v1.45/images/json").json();
    assert!(old[0].get("VirtualSize").is_some() && new[0].get("VirtualSize").is_none(), "{old} {new}");
}

#[test]
fn ping_answers_get_and_head_with_dockers_headers() {
    let d = Daemon::start();
    for method in ["GET", "HEAD"] {
        let r = d.http(method, "/_ping");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("api-version"), Some("1.45"));
        assert_eq!(r.header("docker-experimental"), Some("false"));
        assert_eq!(r.header("ostype"), Some("linux"));
        assert!(r.header("builder-version").is_some());
        assert!(r.header("cache-control").unwrap().contains("no-cache"));
        assert_eq!(r.header("pragma"), Some("no-cache"));
        if method == "GET" {
            assert_eq!(r.text(), "OK");
        }
    }
    assert_eq!(d.http("GET", "/v1.45/_ping").text(), "OK");
}

#[test]
fn unknown_routes_and_images_are_docker_404s() {
    let d = Daemon::start();
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/v1.45/networks"),
        ("POST", "/version"),
        ("PUT", "/images/json"),
        ("GET", "/images/app:1/history"),
    ] {
        let r = d.http(method, path);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json(), serde_json::json!({"message": "page not found"}), "{method} {path}");
    }
    for (method, path, name) in [
        ("GET", "/images/nope:1/json", "nope:1"),
        ("GET", "/images/localhost/a/b:2/json", "localhost/a/b:2"),
        ("GET", "/images/nope/get", "nope"),
        ("GET", "/images/get?names=nope", "nope"),
        ("POST", "/images/nope/tag?repo=x", "nope"),
        ("DELETE", "/images/nope", "nope"),
        ("POST", "/images/delta?src=nope&dest=nope2", "nope"),
    ] {
        let r = d.http(method, path);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.message(), format!("No such image: {name}"), "{method} {path}");
    }
}

#[test]
fn bad_parameters_are_400s() {
    let d = Daemon::start();
    d.http_body("POST", "/images/load?quiet=1", &[], &app("app:1", 2).archive());
    for path in [
        "/images/json?filters=%7Bbad",
        "/images/json?filters=%7B%22colour%22%3A%5B%22blue%22%5D%7D",
        "/images/json?filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D",
        "/events?since=yesterday",
        "/events?filters=%7B%22shape%22%3A%5B%22x%22%5D%7D",
        "/system/df?type=galaxies",
        "/images/get",
    ] {
        let r = d.http("GET", path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(!r.message().is_empty(), "{path}");
    }
    for path in [
        "/images/app:1/tag",
        "/images/app:1/tag?repo=UPPER",
        "/images/app:1/tag?repo=app&tag=-bad",
        "/images/app:1/tag?repo=app@sha256:00",
        "/images/delta?src=app:1",
    ] {
        let r = d.http("POST", path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    let r = d.http("POST", "/images/app:1/tag?repo=localhost/x&tag=v2");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(d.http("GET", "/images/localhost/x:v2/json").status, 200);
}

#[test]
fn load_answers_a_json_message_stream() {
    let d = Daemon::start();
    let img = app("app:1", 2);
    let r = d.http_body("POST", "/images/load?quiet=0", &[("Content-Type", "application/x-tar")], &img.archive());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let msgs = json_lines(&r.text());
    assert_eq!(msgs.last().unwrap()["stream"], "Loaded image: app:1\n", "{}", r.text());

    // An untagged image is reported by ID; a gzip-compressed archive is accepted.
    let mut untagged = app("ignored:1", 4);
    untagged.tags.clear();
    let mut gz = flate2_free_gzip(&untagged.archive());
    let r = d.http_body("POST", "/images/load", &[], &gz);
    assert_eq!(json_lines(&r.text()).last().unwrap()["stream"], format!("Loaded image ID: {}\n", untagged.id()));

    // A corrupt archive: a docker error, and the store is unchanged.
    gz.truncate(gz.len() / 2);
    let r = d.http_body("POST", "/images/load?quiet=1", &[], &gz);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!r.message().is_empty());
    let junk = common::archive::noise(9, 3 << 20);
    let r = d.http_body("POST", "/images/load", &[], &junk);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains("invalid archive"), "{}", r.text());
    assert_eq!(d.http("GET", "/images/json").json().as_array().unwrap().len(), 2);
}

/// A stored gzip member (deflate "stored" blocks), so the test needs no compression crate.
fn flate2_free_gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        out.extend_from_slice(c);
    }
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn delta_endpoint_streams_balena_engines_messages() {
    let d = Daemon::start();
    let base = Image::new("svc:1", vec![layer(1, 20_000), layer(2, 20_000)]);
    let target = Image::new("svc:2", vec![layer(1, 20_000), common::archive::tar_of(&[("bin/tool", &common::archive::noise(2, 21_000))])]);
    d.http_body("POST", "/images/load?quiet=1", &[], &common::archive::archive_of(&[base.clone(), target.clone()]));
    let r = d.http("POST", "/images/delta?src=svc:1&dest=svc:2&t=svc:delta");
    assert_eq!(r.status, 200, "{}", r.text());
    let msgs = json_lines(&r.text());
    let statuses: Vec<&str> = msgs.iter().filter_map(|m| m["status"].as_str()).collect();
    assert!(statuses.contains(&"Waiting") && statuses.contains(&"Skipping common layer") && statuses.contains(&"Delta complete"), "{statuses:?}");
    let n = statuses.len();
    assert!(statuses[n - 3].starts_with("Normal size: ") && statuses[n - 3].contains("x improvement"), "{statuses:?}");
    let created = statuses[n - 2].strip_prefix("Created delta: sha256:").expect("Created delta line");
    assert_eq!(created.len(), 64);
    assert_eq!(statuses[n - 1], "Successfully tagged svc:delta", "{statuses:?}");
    let doc = d.http("GET", "/images/svc:delta/json").json();
    assert_eq!(doc["Id"], format!("sha256:{created}"));
    assert_eq!(doc["Config"]["Labels"]["io.balena.delta.base"], base.id());

    // On a device that has only the base, loading the delta rebuilds the target with its ID.
    let delta = d.http("GET", "/images/svc:delta/get");
    assert_eq!(delta.status, 200);
    let device = Daemon::start();
    device.http_body("POST", "/images/load?quiet=1", &[], &base.archive());
    let r = device.http_body("POST", "/images/load?quiet=1", &[], &delta.body);
    assert!(r.text().contains("Loaded image: svc:2"), "{}", r.text());
    assert_eq!(device.http("GET", "/images/svc:2/json").json()["Id"], target.id());

    // A device without the base: an error naming the missing base, and nothing loaded.
    let bare = Daemon::start();
    let r = bare.http_body("POST", "/images/load?quiet=1", &[], &delta.body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains(&base.id()), "{}", r.text());
    assert_eq!(bare.http("GET", "/images/json").json(), serde_json::json!([]));
}

#[test]
fn events_stream_live_until_the_deadline() {
    let d = Daemon::start();
    d.http_body("POST", "/images/load?quiet=1", &[], &app("app:1", 2).archive());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let until = format!("{}.{:09}", now.as_secs() + 2, now.subsec_nanos());
    let sock = d.sock.clone();
    // `since` = now: the tag below is seen exactly once whether it lands before or after the stream opens.
    let path = format!("/events?since={since}&until={until}&filters=%7B%22type%22%3A%7B%22image%22%3Atrue%7D%7D");
    let watcher = std::thread::spawn(move || http::request(&sock, "GET", &path, &[], b""));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.http("POST", "/images/app:1/tag?repo=app&tag=live").status, 201);
    let started = std::time::Instant::now();
    let r = watcher.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "stream did not end at `until`");
    let events = json_lines(&r.text());
    // Only what happened since: the tag, not the load before it.
    assert_eq!(events.len(), 1, "{}", r.text());
    assert_eq!(events[0]["Action"], "tag");
    assert_eq!(events[0]["Actor"]["Attributes"]["name"], "app:live");
    assert!(events[0]["timeNano"].as_i64().unwrap() > 0);
}

#[test]
fn save_streams_while_a_load_holds_the_store() {
    let d = Daemon::start();
    let img = app("app:1", 2);
    d.http_body("POST", "/images/load?quiet=1", &[], &img.archive());

    // A load whose body arrives slowly keeps the store's writer busy ...
    let big = Image::new("big:1", vec![layer(5, 1 << 20)]).archive();
    let mut slow = UnixStream::connect(&d.sock).unwrap();
    let head = format!("POST /v1.45/images/load?quiet=1 HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", big.len());
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&big[..big.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // ... yet readers go on: list, inspect, save.
    assert_eq!(d.http("GET", "/images/json").status, 200);
    assert_eq!(d.http("GET", "/images/app:1/json").status, 200);
    let saved = d.http("GET", "/v1.45/images/app:1/get");
    assert_eq!(saved.status, 200);
    assert_eq!(saved.header("content-type"), Some("application/x-tar"));
    assert!(saved.body.len() > 7000);
    // A second writer waits for the first, then succeeds.
    let sock = d.sock.clone();
    let tagger = std::thread::spawn(move || http::request(&sock, "POST", "/images/app:1/tag?repo=app&tag=2", &[], b""));

    slow.write_all(&big[big.len() / 2..]).unwrap();
    let mut raw = Vec::new();
    slow.read_to_end(&mut raw).unwrap();
    let r = http::parse(&raw, false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Loaded image: big:1"), "{}", r.text());
    assert_eq!(tagger.join().unwrap().status, 201);

    // The saved archive loads into another daemon with the same ID.
    let e = Daemon::start();
    let r = e.http_body("POST", "/images/load?quiet=1", &[], &saved.body);
    assert!(r.text().contains("Loaded image: app:1"), "{}", r.text());
    assert_eq!(e.http("GET", "/images/app:1/json").json()["Id"], img.id());
}

#[test]
fn malformed_requests_do_not_crash_the_daemon() {
    let d = Daemon::start();
    let answers = [
        http::raw(&d.sock, b"GARBAGE\r\n\r\n"),
        http::raw(&d.sock, b"GET / HTTP/9.9\r\n\r\n"),
        http::raw(&d.sock, &[0u8, 255, 1, 2, 3, 13, 10, 13, 10]),
        http::raw(&d.sock, format!("GET /version HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20)).as_bytes()),
        http::raw(&d.sock, b"POST /images/load HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nshort"),
        http::raw(&d.sock, b"POST /images/load HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        http::raw(&d.sock, b"GET /images/%ff%fe/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"),
    ];
    for a in &answers {
        let text = String::from_utf8_lossy(a);
        assert!(a.is_empty() || text.starts_with("HTTP/1.1 4"), "unexpected answer: {text}");
    }
    // A big body on an endpoint that takes none is ignored.
    let r = d.http_body("POST", "/images/nope/tag?repo=x", &[], &vec![b'x'; 4 << 20]);
    assert_eq!(r.status, 404);
    assert_eq!(d.http("GET", "/_ping").status, 200);
    assert!(d.child.as_ref().is_some());
}
