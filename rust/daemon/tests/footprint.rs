//! Figures to watch (printed; run with `--nocapture`): the daemon's idle memory after start and one
//! `docker images`, and how long `docker images` and a raw `GET /images/json` take. The assertions are loose
//! guards against regressions of an order of magnitude, not benchmarks.

mod common;

use std::time::{Duration, Instant};

use common::archive::{app, archive_of, layer, Image};
use common::Daemon;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn idle_memory_and_list_latency() {
    let d = Daemon::start();
    let images: Vec<Image> = (0..10).map(|i| Image::new(&format!("app{i}:1"), vec![layer(1, 4000), layer(100 + i, 2000)])).collect();
    d.load(&archive_of(&images));
    d.load(&app("single:1", 2).archive());
    d.docker_ok(&["images"]);
    std::thread::sleep(Duration::from_millis(200));
    let rss = rss_kib(d.pid());

    let cli: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            d.docker_ok(&["images"]);
            t.elapsed()
        })
        .collect();
    let raw: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(d.http("GET", "/v1.45/images/json").status, 200);
            t.elapsed()
        })
        .collect();
    let (cli, raw) = (median(cli), median(raw));
    let after = rss_kib(d.pid());
    eprintln!(
        "footprint: idle RSS {rss} KiB after start + `docker images` (11 images); {after} KiB after 60 more listings; \
         `docker images` median {cli:?} (CLI included); GET /images/json median {raw:?}"
    );
    assert!(rss < 64 * 1024, "idle RSS {rss} KiB");
    assert!(raw < Duration::from_millis(200), "GET /images/json took {raw:?}");
}
