//! The user process's exec: `PATH` candidates computed before `clone`, and docker's wording and
//! exit codes when it fails.

use crate::error::{Error, ExecError, Result};
use crate::plan::{cstr, ExecStep};
use crate::spec::{Process, DEFAULT_PATH};
use crate::syscall::{CArray, Errno};

pub(crate) fn step(process: &Process) -> Result<ExecStep> {
    let arg0 = process.args.first().filter(|a| !a.is_empty()).ok_or_else(|| Error::invalid("no command given"))?;
    let searched = !arg0.contains('/');
    let candidates = if searched {
        let path = process.env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|dir| if dir.is_empty() { "." } else { dir })
            .map(|dir| cstr(format!("{}/{arg0}", dir.trim_end_matches('/'))))
            .collect::<Result<Vec<_>>>()?
    } else {
        vec![cstr(arg0)?]
    };
    for e in &process.env {
        if !e.contains('=') {
            return Err(Error::invalid(format!("environment entry {e:?} is not KEY=value")));
        }
    }
    Ok(ExecStep {
        arg0: arg0.clone(),
        searched,
        candidates,
        argv: CArray::new(process.args.iter().map(cstr).collect::<Result<_>>()?),
        envp: CArray::new(process.env.iter().map(cstr).collect::<Result<_>>()?),
    })
}

/// Docker's message and exit code for a failed exec. `detail` is the candidate the error is about.
pub(crate) fn error(step: &ExecStep, errno: Errno, detail: i32) -> ExecError {
    let arg0 = &step.arg0;
    let path = usize::try_from(detail)
        .ok()
        .and_then(|i| step.candidates.get(i))
        .map_or_else(|| arg0.clone(), |c| c.to_string_lossy().into_owned());
    let (message, exit_code) = match errno {
        Errno::ENOENT if detail >= 0 => (format!("exec {path}: no such file or directory"), 127),
        Errno::ENOENT if step.searched => (format!("exec: {arg0:?}: executable file not found in $PATH"), 127),
        Errno::ENOENT => (format!("exec: {arg0:?}: stat {arg0}: no such file or directory"), 127),
        Errno::EACCES => (format!("exec: {path:?}: permission denied"), 126),
        other => (format!("exec {path}: {}", other.desc().to_lowercase()), 128),
    };
    ExecError { message, errno, exit_code }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(args: &[&str], env: &[&str]) -> Process {
        let mut p = Process::new(args.iter().map(|s| s.to_string()).collect());
        p.env = env.iter().map(|s| s.to_string()).collect();
        p
    }

    #[test]
    fn searches_path_from_env_or_default() {
        let s = step(&process(&["sh", "-c", "true"], &["PATH=/bin:/usr/bin/"])).unwrap();
        assert_eq!(s.candidates, [c"/bin/sh".to_owned(), c"/usr/bin/sh".to_owned()]);
        let s = step(&process(&["ls"], &[])).unwrap();
        assert_eq!(s.candidates.len(), DEFAULT_PATH.split(':').count());
        let s = step(&process(&["./run"], &[])).unwrap();
        assert!(!s.searched);
        assert_eq!(s.candidates, [c"./run".to_owned()]);
        assert!(step(&process(&[], &[])).is_err());
        assert!(step(&process(&["x"], &["NOEQUALS"])).is_err());
    }

    #[test]
    fn words_errors_like_docker() {
        let s = step(&process(&["nope"], &["PATH=/bin"])).unwrap();
        let e = error(&s, Errno::ENOENT, -1);
        assert_eq!((e.message.as_str(), e.exit_code), ("exec: \"nope\": executable file not found in $PATH", 127));
        let e = error(&s, Errno::EACCES, 0);
        assert_eq!((e.message.as_str(), e.exit_code), ("exec: \"/bin/nope\": permission denied", 126));
        let e = error(&s, Errno::ENOEXEC, 0);
        assert_eq!((e.message.as_str(), e.exit_code), ("exec /bin/nope: exec format error", 128));
        let s = step(&process(&["/app/run.sh"], &[])).unwrap();
        let e = error(&s, Errno::ENOENT, -1);
        assert_eq!(e.message, "exec: \"/app/run.sh\": stat /app/run.sh: no such file or directory");
        let e = error(&s, Errno::ENOENT, 0);
        assert_eq!((e.message.as_str(), e.exit_code), ("exec /app/run.sh: no such file or directory", 127));
    }
}
