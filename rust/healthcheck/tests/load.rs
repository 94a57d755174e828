//! No false failure under load: every core saturated by busy loops (at least two), 50 runs against the
//! real daemon with the default timeout all pass.

mod common;

use std::process::{Child, Command, Stdio};

use common::{ms, percentile, run, Engine};

const RUNS: usize = 50;

/// Busy loops, killed (and reaped) when dropped.
struct Burners(Vec<Child>);

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn all_pass_with_every_core_saturated() {
    let e = Engine::start();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let burners = Burners(
        (0..cores.max(2) * 2)
            .map(|_| Command::new("sh").args(["-c", "while :; do :; done"]).stdin(Stdio::null()).spawn().unwrap())
            .collect(),
    );
    // Let the scheduler see them as CPU hogs.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut samples = Vec::with_capacity(RUNS);
    let mut failures = Vec::new();
    for _ in 0..RUNS {
        let o = run(&e.args());
        if !o.status.success() {
            failures.push(o.stderr.clone());
        }
        samples.push(o.elapsed);
    }
    drop(burners);
    eprintln!(
        "healthcheck vs balena-engined with {} busy loops on {cores} cores, {RUNS} runs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        cores.max(2) * 2,
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        ms(percentile(&samples, 100.0))
    );
    assert!(failures.is_empty(), "{} of {RUNS} runs failed under load: {failures:?}", failures.len());
}
