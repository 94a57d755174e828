//! `Config.User` to numeric IDs through the image's `/etc/passwd` and `/etc/group`, read from its layer
//! dirs (top first) as the overlay would show them: the top-most layer that has the file wins; a whiteout
//! (0/0 character device) or an opaque or whited-out `/etc` above hides the layers below.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use runtime::User;

/// A user as the process gets it: IDs, supplementary groups, and the home directory (for `HOME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub user: User,
    pub home: String,
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

use std::os::unix::fs::MetadataExt;

fn opaque(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    let mut buf = [0u8; 4];
    // SAFETY: valid C strings and buffer.
    let n =
        unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

/// The file `rel` (e.g. `etc/passwd`) as the container's root would show it, if any.
pub fn find_in_layers(lower_dirs: &[PathBuf], rel: &str) -> Option<PathBuf> {
    let parent = Path::new(rel).parent().unwrap_or(Path::new(""));
    for layer in lower_dirs {
        let p = layer.join(rel);
        if is_whiteout(&p) {
            return None;
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            return Some(p);
        }
        // A whited-out or opaque parent hides everything below.
        let mut hidden = false;
        let mut acc = layer.clone();
        for comp in parent.components() {
            acc.push(comp);
            if is_whiteout(&acc) || opaque(&acc) {
                hidden = true;
                break;
            }
        }
        if hidden {
            return None;
        }
    }
    None
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read(lower_dirs: &[PathBuf], rel: &str) -> String {
    find_in_layers(lower_dirs, rel).and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default()
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn lookup_group(groups: &[GroupEntry], g: &str) -> Result<u32, String> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    groups
        .iter()
        .find(|e| e.name == g)
        .map(|e| e.gid)
        .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))
}

/// Resolves `spec` (`""`, `uid`, `name`, `uid:gid`, `name:group`, …) and `group_add` as runc does.
pub fn resolve(lower_dirs: &[PathBuf], spec: &str, group_add: &[String]) -> Result<Resolved, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let pw = passwd(&read(lower_dirs, "etc/passwd"));
    let numeric = u.parse::<u32>().ok();
    let entry = match numeric {
        Some(uid) => pw.iter().find(|e| e.uid == uid),
        None => Some(
            pw.iter()
                .find(|e| e.name == u)
                .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?,
        ),
    };
    let uid = numeric.or(entry.map(|e| e.uid)).unwrap_or(0);
    let gr_text = read(lower_dirs, "etc/group");
    let gr = groups(&gr_text);
    let gid = match g.filter(|g| !g.is_empty()) {
        Some(g) => lookup_group(&gr, g)?,
        None => entry.map_or(0, |e| e.gid),
    };
    let mut additional = Vec::new();
    // Supplementary groups from /etc/group when no group was forced, as runc does.
    if g.is_none() {
        if let Some(e) = entry {
            for grp in gr.iter().filter(|x| x.members.contains(&e.name)) {
                if grp.gid != gid && !additional.contains(&grp.gid) {
                    additional.push(grp.gid);
                }
            }
        }
    }
    for ga in group_add {
        let id = lookup_group(&gr, ga)?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    let home = entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()).unwrap_or_else(|| "/".into());
    Ok(Resolved { user: User { uid, gid, additional_gids: additional }, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        for (p, c) in files {
            let f = dir.join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, c).unwrap();
        }
        dir.to_path_buf()
    }

    #[test]
    fn resolves_like_runc() {
        let t = tempfile::tempdir().unwrap();
        let low = layer(
            &t.path().join("low"),
            &[
                ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
                ("etc/group", "root:x:0:\napp:x:1000:\nvideo:x:44:app\n"),
            ],
        );
        let top = layer(&t.path().join("top"), &[("etc/group", "root:x:0:\napp:x:1000:\naudio:x:29:app\n")]);
        let dirs = vec![top, low];
        let r = resolve(&dirs, "app", &[]).unwrap();
        assert_eq!(
            (r.user.uid, r.user.gid, r.user.additional_gids.clone(), r.home.as_str()),
            (1000, 1000, vec![29], "/home/app")
        );
        let r = resolve(&dirs, "1000:1000", &[]).unwrap();
        assert_eq!((r.user.uid, r.user.gid), (1000, 1000));
        assert!(r.user.additional_gids.is_empty());
        let r = resolve(&dirs, "4242", &["audio".into()]).unwrap();
        assert_eq!((r.user.uid, r.user.gid, r.user.additional_gids, r.home.as_str()), (4242, 0, vec![29], "/"));
        assert!(resolve(&dirs, "nobody", &[]).unwrap_err().contains("unable to find user nobody"));
        assert!(resolve(&dirs, "app:nogroup", &[]).unwrap_err().contains("unable to find group nogroup"));
        let r = resolve(&dirs, "", &[]).unwrap();
        assert_eq!((r.user.uid, r.home.as_str()), (0, "/root"));
    }
}
