//! `--pidfile`: written at start, removed at exit; a live daemon's pidfile is not overwritten.

use std::fs;
use std::path::{Path, PathBuf};

pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, String> {
        if let Ok(old) = fs::read_to_string(path) {
            if let Ok(pid) = old.trim().parse::<i32>() {
                let alive = pid > 0 && pid as u32 != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
                if alive {
                    return Err(format!("pid file {} names a running process ({pid}): is another daemon running?", path.display()));
                }
            }
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        fs::write(path, std::process::id().to_string()).map_err(|e| format!("writing pid file {}: {e}", path.display()))?;
        Ok(PidFile { path: path.to_path_buf() })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
