//! Latency against the real, idle daemon: 200 runs, spawn to exit as a caller sees it; p99 must stay within
//! 10 ms. Alone in its test binary (cargo runs test binaries one after another, so nothing of this suite runs
//! beside it). Load from outside the suite only inflates the figures: a measurement is repeated (at most 3
//! times) until one is within the bound, and every attempt is printed with the p99 of spawning `true`, the
//! floor any process-based check pays on this machine.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ms, percentile, run, Engine};

const RUNS: usize = 200;
const BOUND: Duration = Duration::from_millis(10);

#[test]
fn p99_within_10ms_on_an_idle_daemon() {
    let e = Engine::start();
    let args = e.args();
    // Warm the page cache (binary, libraries) as on a device where it runs every few seconds.
    for _ in 0..5 {
        assert!(run(&args).status.success());
    }
    let mut attempts = Vec::new();
    for attempt in 1..=3 {
        let mut samples = Vec::with_capacity(RUNS);
        let mut floor = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let o = run(&args);
            assert!(o.status.success(), "{}", o.stderr);
            samples.push(o.elapsed);
            let t = Instant::now();
            Command::new("true").stdin(Stdio::null()).status().unwrap();
            floor.push(t.elapsed());
        }
        let (p50, p99, max) = (percentile(&samples, 50.0), percentile(&samples, 99.0), percentile(&samples, 100.0));
        let line = format!(
            "attempt {attempt}: healthcheck vs idle balena-engined, {RUNS} runs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             (spawning `true`: p50 {:.2} ms, p99 {:.2} ms)",
            ms(p50),
            ms(p99),
            ms(max),
            ms(percentile(&floor, 50.0)),
            ms(percentile(&floor, 99.0))
        );
        eprintln!("{line}");
        attempts.push(line);
        if p99 <= BOUND {
            return;
        }
    }
    panic!("p99 above {BOUND:?} in every attempt:\n{}", attempts.join("\n"));
}
