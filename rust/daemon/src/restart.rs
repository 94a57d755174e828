//! Restart policies (`HostConfig.RestartPolicy`): whether, and after how long, a container that stopped is
//! started again; and which containers start when the daemon boots. Pure logic: the container manager keeps
//! the counters and the timers.
//!
//! Docker's rules (its `restartmanager`), kept here:
//! - a container the user stopped (`docker stop`/`kill`) is never restarted by its policy, nor is any while
//!   the daemon shuts down;
//! - `always` restarts whatever the exit code; `unless-stopped` too; `on-failure[:N]` only on a non-zero exit
//!   code and, when N > 0, at most N times (`restart_count`, reset by a start from the user);
//! - the delay before a restart is 100 ms, doubled for each consecutive restart, capped at one minute; it
//!   starts over at 100 ms once the container has run for 10 s or more;
//! - at boot, `always` containers start again, even those the user had stopped; `unless-stopped` and
//!   `on-failure` ones start again if they were running (or restarting) when the daemon went down — a power
//!   cut included — and the user had not stopped them.

use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// `max_retries` 0: no limit.
    OnFailure { max_retries: u32 },
}

/// The first delay, doubled per consecutive restart.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay between restarts.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A container that ran at least this long restarts after [`FIRST_DELAY`] again.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

impl RestartPolicy {
    /// Reads docker's `HostConfig.RestartPolicy`: `{"Name": "no"|""|"always"|"unless-stopped"|"on-failure",
    /// "MaximumRetryCount": n}`; null or absent is `no`. Errors are dockerd's (HTTP 400).
    pub fn from_host_config(v: &Value) -> Result<RestartPolicy, String> {
        if v.is_null() {
            return Ok(RestartPolicy::No);
        }
        let Some(obj) = v.as_object() else { return Err("invalid restart policy: not an object".into()) };
        let name = match obj.get("Name") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => return Err(format!("invalid restart policy: Name must be a string, not {other}")),
        };
        let count = match obj.get("MaximumRetryCount") {
            None | Some(Value::Null) => 0,
            Some(n) => n.as_i64().ok_or_else(|| format!("invalid restart policy: MaximumRetryCount must be an integer, not {n}"))?,
        };
        match name {
            "no" | "always" | "unless-stopped" if count != 0 => {
                let mut msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'".to_owned();
                if count < 0 {
                    msg.push_str(" and cannot be negative");
                }
                Err(msg)
            }
            "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" if count < 0 => Err("invalid restart policy: maximum retry count cannot be negative".into()),
            "on-failure" => {
                let max_retries = u32::try_from(count).map_err(|_| format!("invalid restart policy: maximum retry count {count} is too large"))?;
                Ok(RestartPolicy::OnFailure { max_retries })
            }
            // Containers created before docker 25 have an empty name, with any count: no policy.
            "" => Ok(RestartPolicy::No),
            other => Err(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )),
        }
    }

    /// The `Name` docker reports in `HostConfig.RestartPolicy`.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure { .. } => "on-failure",
        }
    }

    /// Back to docker's `HostConfig.RestartPolicy` (for inspect).
    pub fn to_host_config(&self) -> Value {
        let count = match self {
            RestartPolicy::OnFailure { max_retries } => *max_retries,
            _ => 0,
        };
        json!({ "Name": self.name(), "MaximumRetryCount": count })
    }
}

/// The back-off step of the restart about to be decided: the consecutive restarts so far, or 0 when the
/// container ran long enough to start over.
fn step(consecutive_failures: u32, ran_for: Duration) -> u32 {
    if ran_for >= RESET_AFTER {
        0
    } else {
        consecutive_failures
    }
}

/// The delay of back-off step `step`: 100 ms · 2^step, at most one minute.
pub fn backoff(step: u32) -> Duration {
    let factor = 1u64.checked_shl(step).unwrap_or(u64::MAX);
    let ms = (FIRST_DELAY.as_millis() as u64).saturating_mul(factor);
    Duration::from_millis(ms).min(MAX_DELAY)
}

/// Whether a container that just exited is restarted, and after how long (`Some(delay)`), or left stopped
/// (`None`).
///
/// - `exit_code`: the exit code of the run that ended (128+N for a signal);
/// - `restart_count`: restarts done by the policy since the user last started the container (docker's
///   `RestartCount`): `on-failure:N` stops after N;
/// - `consecutive_failures`: restarts done since the container last ran for [`RESET_AFTER`] or more: the
///   back-off exponent. After scheduling a restart, store [`next_consecutive_failures`] of the same
///   arguments; set it to 0 when the user starts the container;
/// - `ran_for`: how long the run that ended lasted (≥ 10 s resets the delay to 100 ms);
/// - `stopped_by_user`: the run ended because of `docker stop`/`kill` (or `rm -f`): no restart;
/// - `daemon_shutting_down`: no restart either.
pub fn decide(
    policy: &RestartPolicy,
    exit_code: i32,
    restart_count: u32,
    consecutive_failures: u32,
    ran_for: Duration,
    stopped_by_user: bool,
    daemon_shutting_down: bool,
) -> Option<Duration> {
    if stopped_by_user || daemon_shutting_down {
        return None;
    }
    let restart = match *policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure { max_retries } => exit_code != 0 && (max_retries == 0 || restart_count < max_retries),
    };
    restart.then(|| backoff(step(consecutive_failures, ran_for)))
}

/// The `consecutive_failures` to keep after [`decide`] scheduled a restart with these arguments.
pub fn next_consecutive_failures(consecutive_failures: u32, ran_for: Duration) -> u32 {
    step(consecutive_failures, ran_for).saturating_add(1)
}

/// Whether the daemon starts this container when it boots. `was_running`: the container was running, paused
/// or waiting to be restarted when the daemon went down (cleanly or not); `stopped_by_user`: its last stop
/// came from the user.
pub fn should_start_on_boot(policy: &RestartPolicy, was_running: bool, stopped_by_user: bool) -> bool {
    match policy {
        RestartPolicy::No => false,
        // docker: "If it is manually stopped, it is restarted only when Docker daemon restarts".
        RestartPolicy::Always => was_running || stopped_by_user,
        RestartPolicy::UnlessStopped | RestartPolicy::OnFailure { .. } => was_running && !stopped_by_user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RestartPolicy::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn parses_host_config() {
        let ok: &[(Value, RestartPolicy)] = &[
            (Value::Null, No),
            (json!({}), No),
            (json!({"Name": ""}), No),
            (json!({"Name": "", "MaximumRetryCount": 5}), No),
            (json!({"Name": null}), No),
            (json!({"Name": "no"}), No),
            (json!({"Name": "no", "MaximumRetryCount": 0}), No),
            (json!({"Name": "always"}), Always),
            (json!({"Name": "unless-stopped", "MaximumRetryCount": null}), UnlessStopped),
            (json!({"Name": "on-failure"}), OnFailure { max_retries: 0 }),
            (json!({"Name": "on-failure", "MaximumRetryCount": 3}), OnFailure { max_retries: 3 }),
        ];
        for (v, want) in ok {
            assert_eq!(RestartPolicy::from_host_config(v).as_ref(), Ok(want), "{v}");
            // Round trip through what inspect shows.
            if *v != Value::Null && v.get("Name").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
                assert_eq!(RestartPolicy::from_host_config(&want.to_host_config()).as_ref(), Ok(want));
            }
        }
        let bad: &[(Value, &str)] = &[
            (json!({"Name": "sometimes"}), "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
            (json!({"Name": "always", "MaximumRetryCount": 2}), "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
            (json!({"Name": "no", "MaximumRetryCount": -1}), "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"),
            (json!({"Name": "unless-stopped", "MaximumRetryCount": 1}), "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
            (json!({"Name": "on-failure", "MaximumRetryCount": -2}), "invalid restart policy: maximum retry count cannot be negative"),
            (json!({"Name": "on-failure", "MaximumRetryCount": 1u64 << 40}), "invalid restart policy: maximum retry count 1099511627776 is too large"),
            (json!({"Name": "on-failure", "MaximumRetryCount": "3"}), "invalid restart policy: MaximumRetryCount must be an integer, not \"3\""),
            (json!({"Name": 3}), "invalid restart policy: Name must be a string, not 3"),
            (json!("always"), "invalid restart policy: not an object"),
        ];
        for (v, msg) in bad {
            assert_eq!(RestartPolicy::from_host_config(v).unwrap_err(), *msg, "{v}");
        }
        assert_eq!(OnFailure { max_retries: 4 }.to_host_config(), json!({"Name": "on-failure", "MaximumRetryCount": 4}));
        assert_eq!(No.to_host_config(), json!({"Name": "no", "MaximumRetryCount": 0}));
    }

    #[test]
    fn backoff_doubles_and_caps_at_a_minute() {
        let want = [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 60_000, 60_000];
        for (step, ms) in want.iter().enumerate() {
            assert_eq!(backoff(step as u32), MS(*ms), "step {step}");
        }
        assert_eq!(backoff(63), MAX_DELAY);
        assert_eq!(backoff(64), MAX_DELAY);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    /// One row: policy, exit code, restart count, consecutive failures, ran for, stopped by user, daemon
    /// shutting down → expected delay.
    type Case = (RestartPolicy, i32, u32, u32, Duration, bool, bool, Option<Duration>);

    #[test]
    fn decides_like_docker() {
        let of = |n| OnFailure { max_retries: n };
        let cases: &[Case] = &[
            // no: never.
            (No, 0, 0, 0, MS(1), false, false, None),
            (No, 1, 0, 0, MS(1), false, false, None),
            (No, 137, 0, 0, S(60), false, false, None),
            // always: whatever the exit code, with back-off.
            (Always, 0, 0, 0, MS(1), false, false, Some(MS(100))),
            (Always, 1, 0, 0, MS(1), false, false, Some(MS(100))),
            (Always, 0, 5, 1, MS(1), false, false, Some(MS(200))),
            (Always, 0, 5, 2, MS(1), false, false, Some(MS(400))),
            (Always, 0, 50, 9, S(9), false, false, Some(MS(51_200))),
            (Always, 0, 50, 10, MS(1), false, false, Some(S(60))),
            (Always, 0, 500, 400, MS(1), false, false, Some(S(60))),
            // ... reset after 10 s of running (exactly 10 s counts).
            (Always, 0, 50, 10, S(10), false, false, Some(MS(100))),
            (Always, 0, 50, 10, MS(9_999), false, false, Some(S(60))),
            (Always, 2, 50, 7, S(3600), false, false, Some(MS(100))),
            // ... but not after a stop by the user, nor during shutdown.
            (Always, 0, 0, 0, MS(1), true, false, None),
            (Always, 143, 0, 0, S(100), true, false, None),
            (Always, 0, 0, 0, MS(1), false, true, None),
            (Always, 1, 0, 0, MS(1), true, true, None),
            // unless-stopped: like always.
            (UnlessStopped, 0, 0, 0, MS(1), false, false, Some(MS(100))),
            (UnlessStopped, 3, 2, 3, MS(1), false, false, Some(MS(800))),
            (UnlessStopped, 3, 2, 3, S(11), false, false, Some(MS(100))),
            (UnlessStopped, 0, 0, 0, MS(1), true, false, None),
            (UnlessStopped, 1, 0, 0, MS(1), false, true, None),
            // on-failure: only non-zero exit codes.
            (of(0), 0, 0, 0, MS(1), false, false, None),
            (of(0), 1, 0, 0, MS(1), false, false, Some(MS(100))),
            (of(0), -1, 0, 0, MS(1), false, false, Some(MS(100))),
            (of(0), 137, 0, 0, MS(1), false, false, Some(MS(100))),
            (of(3), 0, 0, 0, MS(1), false, false, None),
            // ... unlimited when 0.
            (of(0), 1, 1_000_000, 4, MS(1), false, false, Some(MS(1600))),
            // ... at most N restarts.
            (of(3), 1, 0, 0, MS(1), false, false, Some(MS(100))),
            (of(3), 1, 1, 1, MS(1), false, false, Some(MS(200))),
            (of(3), 1, 2, 2, MS(1), false, false, Some(MS(400))),
            (of(3), 1, 3, 3, MS(1), false, false, None),
            (of(3), 1, 4, 3, MS(1), false, false, None),
            (of(1), 1, 0, 0, S(30), false, false, Some(MS(100))),
            (of(1), 1, 1, 0, S(30), false, false, None),
            // ... the count limits even when the run was long (the back-off resets, the count does not).
            (of(2), 1, 2, 0, S(30), false, false, None),
            (of(2), 1, 1, 5, S(30), false, false, Some(MS(100))),
            // ... stop and shutdown win.
            (of(0), 1, 0, 0, MS(1), true, false, None),
            (of(0), 1, 0, 0, MS(1), false, true, None),
        ];
        for (i, &(policy, code, count, consecutive, ran, user, shutdown, want)) in cases.iter().enumerate() {
            let got = decide(&policy, code, count, consecutive, ran, user, shutdown);
            assert_eq!(got, want, "case {i}: {policy:?} exit {code} count {count} consecutive {consecutive} ran {ran:?} user {user} shutdown {shutdown}");
        }
    }

    #[test]
    fn consecutive_failures_follow_the_backoff() {
        // A container that exits at once, five times, then runs a minute, then exits at once again.
        let policy = Always;
        let mut consecutive = 0;
        let mut delays = Vec::new();
        for ran in [MS(5), MS(5), MS(5), MS(5), MS(5), S(60), MS(5), MS(5)] {
            let d = decide(&policy, 1, 0, consecutive, ran, false, false).unwrap();
            delays.push(d.as_millis());
            consecutive = next_consecutive_failures(consecutive, ran);
        }
        assert_eq!(delays, [100, 200, 400, 800, 1600, 100, 200, 400]);
        assert_eq!(next_consecutive_failures(u32::MAX, MS(1)), u32::MAX);
        assert_eq!(next_consecutive_failures(7, S(10)), 1);
    }

    #[test]
    fn boot_table() {
        let of = OnFailure { max_retries: 2 };
        // policy, was running, stopped by user → start on boot
        let cases: &[(RestartPolicy, bool, bool, bool)] = &[
            (No, false, false, false),
            (No, true, false, false),
            (No, false, true, false),
            (No, true, true, false),
            (Always, false, false, false), // created, never started
            (Always, true, false, true),
            (Always, false, true, true), // docker: stopped by hand, restarted with the daemon
            (Always, true, true, true),
            (UnlessStopped, false, false, false),
            (UnlessStopped, true, false, true),
            (UnlessStopped, false, true, false),
            (UnlessStopped, true, true, false),
            (of, false, false, false),
            (of, true, false, true), // running at a power cut
            (of, false, true, false),
            (of, true, true, false),
        ];
        for &(policy, running, user, want) in cases {
            assert_eq!(should_start_on_boot(&policy, running, user), want, "{policy:?} running {running} user {user}");
        }
    }
}
