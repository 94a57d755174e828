//! Start-to-exit latency of `true` in a busybox container (needs root and /bin/busybox):
//!
//! ```sh
//! cargo run --release -p balena-engine-runtime --example latency [runs]
//! ```
//!
//! Each run is `start` + `wait` + `cleanup` (cgroup created and removed, overlay mounted in a
//! fresh mount namespace); prints the median and the spread. `HOSTNET=1`: share the host's
//! network namespace; `VERBOSE=1`: also the median of each phase.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use runtime::{start, ContainerSpec, Rootfs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let layer = dir.path().join("layer");
    fs::create_dir_all(layer.join("bin"))?;
    fs::copy("/bin/busybox", layer.join("bin/busybox"))?;
    for applet in ["sh", "true"] {
        symlink("busybox", layer.join("bin").join(applet))?;
    }
    let mut times = Vec::with_capacity(runs);
    let mut phases = Vec::with_capacity(runs);
    for i in 0..runs + 2 {
        let rootfs = Rootfs {
            lower_dirs: vec![layer.clone()],
            container_dir: dir.path().join(format!("c{i}")),
            readonly: false,
        };
        let mut spec = ContainerSpec::new(format!("latency-{i}"), rootfs, vec!["true".into()]);
        spec.cgroup_parent = "balena-engine-bench".into();
        if std::env::var_os("HOSTNET").is_some() {
            spec.network = runtime::Network::Host;
        }
        let t = Instant::now();
        let container = start(&spec)?;
        let t1 = t.elapsed();
        let status = container.wait()?;
        let t2 = t.elapsed();
        container.cleanup()?;
        let elapsed = t.elapsed();
        assert_eq!(status.code, 0);
        if i >= 2 {
            // The first two runs warm the caches.
            times.push(elapsed);
            phases.push((t1, t2 - t1, elapsed - t2));
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "start-to-exit of `true`, {runs} runs: median {:.2} ms (min {:.2}, max {:.2})",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1])
    );
    if std::env::var_os("VERBOSE").is_some() {
        let med = |mut v: Vec<Duration>| {
            v.sort();
            ms(v[v.len() / 2])
        };
        eprintln!(
            "median start {:.2} ms, wait {:.2} ms, cleanup {:.2} ms",
            med(phases.iter().map(|p| p.0).collect()),
            med(phases.iter().map(|p| p.1).collect()),
            med(phases.iter().map(|p| p.2).collect())
        );
    }
    for controller in ["memory", "pids", "cpu", "devices", ""] {
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(controller).join("balena-engine-bench"));
    }
    Ok(())
}
