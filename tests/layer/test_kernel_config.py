#!/usr/bin/env python3
"""The kernel options the engine needs (rust/runtime/kernel-config.txt) against the Yocto kernel fragment
(meta-balena-engine/recipes-kernel/linux/files/balena-engine.cfg) and against the code.

Every option of the list must be in the fragment as =y or =m; every kernel feature the code of
rust/runtime/src and rust/daemon/src uses (a table of code patterns, comments ignored) must have its
options in the list, and every option listed as [used] must be found so in the code. So code that starts
using a feature the list or the fragment lacks fails here, and so does a list that is out of date.

    python3 tests/layer/test_kernel_config.py [NAME_SUBSTRING ...]

Each test_* function is a plain function (no fixtures: tests/layer/test_layer.py's runner and pytest
both run them); standalone, the last line printed is `N passed, M failed`.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FEATURE_LIST = os.path.join(ROOT, "rust", "runtime", "kernel-config.txt")
FRAGMENT = os.path.join(ROOT, "meta-balena-engine", "recipes-kernel", "linux", "files", "balena-engine.cfg")
SOURCE_DIRS = [os.path.join(ROOT, "rust", "runtime", "src"), os.path.join(ROOT, "rust", "daemon", "src")]
SECTIONS = ("used", "planned")

# Code patterns that mean a kernel feature is used, and the options it needs. They look for what code does
# (flags, syscalls, file system types and control files as string literals), not for words in messages.
IMPLIES = [
    (r"\bCLONE_NEWNS\b", ["NAMESPACES"]),
    (r"\bCLONE_NEWUTS\b", ["NAMESPACES", "UTS_NS"]),
    (r"\bCLONE_NEWIPC\b", ["NAMESPACES", "IPC_NS", "SYSVIPC"]),
    (r"\bCLONE_NEWPID\b", ["NAMESPACES", "PID_NS"]),
    (r"\bCLONE_NEWNET\b", ["NAMESPACES", "NET_NS"]),
    (r"\bCLONE_NEWCGROUP\b", ["NAMESPACES", "CGROUPS"]),
    (r"\bCLONE_NEWUSER\b", ["NAMESPACES", "USER_NS"]),
    (r"\bCLONE_NEWTIME\b", ["NAMESPACES", "TIME_NS"]),
    (r'"overlay"|\btrusted\.overlay\.', ["OVERLAY_FS"]),
    (r'"tmpfs"', ["TMPFS"]),
    (r'"devpts"', ["UNIX98_PTYS"]),
    (r'"mqueue"', ["POSIX_MQUEUE"]),
    (r'"proc"', ["PROC_FS"]),
    (r'"sysfs"', ["SYSFS"]),
    (r'"cgroup2?"|"cgroup\.procs"', ["CGROUPS"]),
    (r'"memory\.[a-z_.]+"', ["CGROUPS", "MEMCG"]),
    (r'"memory\.(swap\.max|memsw\.[a-z_]+)"', ["MEMCG", "SWAP"]),
    (r'"pids\.[a-z]+"', ["CGROUPS", "CGROUP_PIDS"]),
    (r'"cpu\.(shares|weight)"', ["CGROUPS", "CGROUP_SCHED", "FAIR_GROUP_SCHED"]),
    (r'"cpu\.(max|cfs_quota_us|cfs_period_us)"', ["CGROUPS", "CGROUP_SCHED", "CFS_BANDWIDTH"]),
    (r'"cpuset(\.[a-z_.]+)?"', ["CGROUPS", "CPUSETS"]),
    (r'"devices\.(allow|deny|list)"', ["CGROUPS", "CGROUP_DEVICE"]),
    (r"\bBPF_PROG_TYPE_CGROUP_DEVICE\b|\bBPF_CGROUP_DEVICE\b", ["CGROUPS", "CGROUP_BPF", "BPF_SYSCALL"]),
    (r"\bSYS_bpf\b", ["BPF_SYSCALL"]),
    (r'"freezer(\.state)?"', ["CGROUPS", "CGROUP_FREEZER"]),
    (r'"hugetlb(\.[A-Za-z0-9_.]+)?"', ["CGROUPS", "CGROUP_HUGETLB"]),
    (r'"(blkio|io)\.(max|weight|throttle\.[a-z_]+)"', ["CGROUPS", "BLK_CGROUP"]),
    (r"\bSYS_(setuid|setgid|setgroups|capset)\b", ["MULTIUSER"]),
    (r"\bUnix(Listener|Stream|Datagram)\b|\bAF_UNIX\b", ["UNIX"]),
    (r"\bTcp(Listener|Stream)\b|\bUdpSocket\b|\bAF_INET\b", ["INET"]),
    (r"\bAF_INET6\b|\bIpv6Addr\b|\bSocketAddrV6\b", ["IPV6"]),
    (r"\btokio::", ["EPOLL", "EVENTFD"]),
    (r"\b(Mutex|Condvar|RwLock)\b", ["FUTEX"]),
    (r"(?i)seccomp", ["SECCOMP", "SECCOMP_FILTER"]),
    (r'"veth"|\bveth\b', ["VETH"]),
    (r'"bridge"|\bIFLA_BR_', ["BRIDGE"]),
    (r"\bbr_netfilter\b|bridge-nf-call", ["NETFILTER", "NETFILTER_ADVANCED", "BRIDGE_NETFILTER"]),
    (r"\bnf_tables\b|\bnftables\b|\bNFT_MSG_|\bNFNL_SUBSYS_NFTABLES\b", ["NETFILTER", "NF_TABLES", "NF_TABLES_INET",
                                                                      "NF_TABLES_IPV4", "NF_TABLES_IPV6"]),
    (r"\bmasquerade\b", ["NF_NAT", "NFT_MASQ"]),
    (r"\b[ds]nat\b", ["NF_NAT", "NFT_NAT"]),
    (r"\bct (state|status)\b|\bconntrack\b", ["NF_CONNTRACK", "NFT_CT"]),
    (r"\bfib [ds]addr\b", ["NFT_FIB_INET", "NFT_FIB_IPV4", "NFT_FIB_IPV6"]),
    (r"\bNFPROTO_IPV6\b|\bip6 (saddr|daddr|nexthdr)\b", ["IPV6", "NF_TABLES_IPV6"]),
    # Not used yet; listed so that a first use fails until the list and the fragment have them.
    (r"\bio_uring", ["IO_URING"]),
    (r"\binotify_", ["INOTIFY_USER"]),
    (r"\bfanotify_", ["FANOTIFY"]),
    (r"\bsignalfd\b", ["SIGNALFD"]),
    (r"\btimerfd_", ["TIMERFD"]),
    (r"\bmemfd_create\b", ["MEMFD_CREATE"]),
    (r"\buserfaultfd\b", ["USERFAULTFD"]),
    (r"\bSYS_(keyctl|add_key)\b", ["KEYS"]),
]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_feature_list(text):
    """{section: [(option, why)]} from `CONFIG_X  # why` lines under `[used]` / `[planned]`."""
    sections, current = {}, None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[([a-z]+)\]", line)
        if m:
            current = m.group(1)
            assert current in SECTIONS, "line %d: unknown section [%s] (known: %s)" % (n, current, SECTIONS)
            sections.setdefault(current, [])
            continue
        m = re.fullmatch(r"(CONFIG_[A-Z0-9_]+)\s+#\s*(\S.*)", line)
        assert m, "line %d: expected `CONFIG_NAME  # why`: %r" % (n, raw)
        assert current, "line %d: option before any [section]" % n
        sections[current].append((m.group(1), m.group(2)))
    return sections


def listed_options(sections):
    return {opt for entries in sections.values() for opt, _ in entries}


def parse_fragment(text):
    """{CONFIG_X: value} of a kconfig fragment; `# CONFIG_X is not set` gives "n"."""
    out = {}
    for raw in text.splitlines():
        line = raw.strip()
        m = re.fullmatch(r"(CONFIG_[A-Za-z0-9_]+)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
            continue
        m = re.fullmatch(r"#\s*(CONFIG_[A-Za-z0-9_]+) is not set", line)
        if m:
            out[m.group(1)] = "n"
    return out


def missing_from_fragment(options, fragment):
    """The options not set to y or m in the fragment, each with what it has instead."""
    return sorted("%s (%s)" % (o, "absent" if o not in fragment else "=" + fragment[o])
                  for o in options if fragment.get(o) not in ("y", "m"))


def strip_comments(src):
    """Rust source without // and /* */ comments (strings, raw strings and char literals kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif c == "r" and re.match(r'r#*"', src[i:]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + len(hashes) + 2)
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(src[i:end])
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\''); otherwise a lifetime or label.
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            tok = m.group(0) if m else "'"
            out.append(tok)
            i += len(tok)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def rust_sources(dirs=None):
    """{relative path: source} of the .rs files under the source directories."""
    out = {}
    for d in dirs or SOURCE_DIRS:
        for base, _, files in os.walk(d):
            for f in sorted(files):
                if f.endswith(".rs"):
                    path = os.path.join(base, f)
                    out[os.path.relpath(path, ROOT)] = read(path)
    return out


def implied_options(sources):
    """{CONFIG_X: sorted [file, ...]} of what the code's patterns imply."""
    out = {}
    for path, src in sources.items():
        code = strip_comments(src)
        for pattern, options in IMPLIES:
            if re.search(pattern, code):
                for o in options:
                    out.setdefault("CONFIG_" + o, set()).add(path)
    return {o: sorted(paths) for o, paths in out.items()}


def unlisted_uses(sources, listed):
    """`CONFIG_X (used in a.rs, b.rs)` for each implied option the list lacks."""
    return ["%s (used in %s)" % (o, ", ".join(paths))
            for o, paths in sorted(implied_options(sources).items()) if o not in listed]


# --------------------------------------------------------------------------- checks

def test_feature_list_parses():
    """kernel-config.txt: [used] and [planned], one `CONFIG_X  # why` a line, no duplicates."""
    sections = parse_feature_list(read(FEATURE_LIST))
    assert set(sections) == set(SECTIONS), "sections %s, expected %s" % (sorted(sections), SECTIONS)
    for name, entries in sections.items():
        assert entries, "[%s] is empty" % name
    options = [o for entries in sections.values() for o, _ in entries]
    dups = sorted({o for o in options if options.count(o) > 1})
    assert not dups, "listed more than once: %s" % dups


def test_kernel_fragment_has_what_the_engine_uses():
    """Every option of kernel-config.txt is =y or =m in balena-engine.cfg, and the code uses nothing unlisted."""
    listed = listed_options(parse_feature_list(read(FEATURE_LIST)))
    missing = missing_from_fragment(listed, parse_fragment(read(FRAGMENT)))
    assert not missing, "%s lacks (add them, =y or =m, with a comment saying why): %s" % (
        os.path.relpath(FRAGMENT, ROOT), ", ".join(missing))
    unlisted = unlisted_uses(rust_sources(), listed)
    assert not unlisted, "the code uses kernel features %s does not list (add them there and to %s):\n%s" % (
        os.path.relpath(FEATURE_LIST, ROOT), os.path.relpath(FRAGMENT, ROOT), "\n".join(unlisted))


def test_check_fails_on_a_fragment_missing_an_option():
    """The fragment check reports an option that is absent, =n, `is not set` or not y/m."""
    listed = listed_options(parse_feature_list(read(FEATURE_LIST)))
    assert "CONFIG_MEMCG" in listed
    # A fragment with everything, in the real one's style, then without CONFIG_MEMCG.
    lines = ["# What the engine needs, grouped with why."] + ["%s=y" % o for o in sorted(listed)]
    assert missing_from_fragment(listed, parse_fragment("\n".join(lines))) == []
    lines = [l for l in lines if not l.startswith("CONFIG_MEMCG=")]
    assert missing_from_fragment(listed, parse_fragment("\n".join(lines))) == ["CONFIG_MEMCG (absent)"]
    for text, why in [("# CONFIG_MEMCG is not set", "=n"), ("CONFIG_MEMCG=n", "=n"), ('CONFIG_MEMCG=""', '=""')]:
        broken = parse_fragment("\n".join(lines + [text]))
        assert missing_from_fragment(listed, broken) == ["CONFIG_MEMCG (%s)" % why], text
    modular = parse_fragment("\n".join(lines + ["CONFIG_MEMCG=m"]))
    assert missing_from_fragment(listed, modular) == []


def test_check_fails_on_code_using_an_unlisted_feature():
    """Code using a feature (veth, seccomp, a control file) the list lacks is reported; comments are not code."""
    listed = listed_options(parse_feature_list(read(FEATURE_LIST)))
    used = listed - {"CONFIG_VETH", "CONFIG_SECCOMP_FILTER"}
    code = {"rust/runtime/src/net.rs": 'fn link() { add_link("veth", name); } // a veth pair, later\n',
            "rust/runtime/src/sec.rs": "fn load() { libc::syscall(libc::SYS_seccomp, 1, 0, p); }\n"}
    assert unlisted_uses(code, used) == ["CONFIG_SECCOMP_FILTER (used in rust/runtime/src/sec.rs)",
                                         "CONFIG_VETH (used in rust/runtime/src/net.rs)"]
    assert unlisted_uses(code, listed) == []
    # Mentions in comments, doc comments and block comments imply nothing.
    quiet = {"a.rs": "/// uses seccomp one day\n/* veth /* nested */ io_uring */ fn f() {} // signalfd\n"}
    assert implied_options(quiet) == {}
    # Strings, raw strings and char literals stay (a `//` inside one is not a comment).
    tricky = {"b.rs": "fn g<'a>(x: &'a str) { let c = '\"'; let u = \"http://x\"; w(r#\"\"memory.max\"\"#); }\n"}
    assert "CONFIG_MEMCG" in implied_options(tricky)
    assert strip_comments('let s = "a // b"; // c\n') == 'let s = "a // b"; \n'
    # A new control file of a controller the list lacks.
    hugetlb = {"c.rs": 'write(dir, "hugetlb.2MB.limit_in_bytes", "0")?;\n'}
    assert unlisted_uses(hugetlb, listed) == ["CONFIG_CGROUP_HUGETLB (used in c.rs)"]


def test_used_options_are_found_in_the_code():
    """Every [used] option is implied by today's code (a stale entry, or a table missing a pattern, fails)."""
    implied = implied_options(rust_sources())
    stale = [o for o, _ in parse_feature_list(read(FEATURE_LIST))["used"] if o not in implied]
    assert not stale, "[used] lists options no code pattern finds (move them to [planned], or add the pattern " \
        "that finds their use to IMPLIES): %s" % ", ".join(stale)


if __name__ == "__main__":
    import test_layer
    sys.exit(test_layer.main(sys.argv[1:], [sys.modules[__name__]]))
