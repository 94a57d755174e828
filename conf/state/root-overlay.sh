#!/bin/sh
# Persistent paths of the read-only root, as root-overlay.conf lists them (policy: conf/README.md, "Persistent
# state").
#
#   root-overlay.sh [LIST]               at boot (balena-root-overlay.service, once /mnt/state is mounted): each
#                                        `bind PATH` gets its copy /mnt/state/root-overlay/PATH, seeded from the
#                                        root file system when it is not there yet, bind-mounted over PATH;
#                                        /etc/machine-id is special (see machine_id); each `link` is checked;
#                                        the kernel hostname is set from /etc/hostname as it now reads
#   root-overlay.sh --image ROOT [LIST]  at image build time: the mount points and links LIST needs, in ROOT
#
# LIST is /usr/lib/balena-state/root-overlay.conf (ROOT's with --image). The file is installed 0644 and run by
# /bin/sh: POSIX sh and busybox applets only (the Yocto image's sh and tools are busybox's).
set -u

LIST=/usr/lib/balena-state/root-overlay.conf
STATE=/mnt/state/root-overlay
status=0
journal_restart=

log() { echo "root-overlay: $*"; }
fail() { echo "root-overlay: $*" >&2; status=1; }

# First line of a file, without its newline ("" if unreadable).
first_line() {
    line=
    [ -r "$1" ] && read -r line < "$1"
    echo "$line"
}

# A machine ID (machine-id(5)): 32 hexadecimal digits, not all zero.
valid_id() {
    case $1 in '' | *[!0-9a-fA-F]*) return 1 ;; esac
    [ ${#1} -eq 32 ] && [ "$1" != 00000000000000000000000000000000 ]
}

# Whether $1 is a mount point (as `mountpoint -q`, which not every busybox has).
is_mount_point() {
    while read -r _ _ _ _ mnt _; do
        [ "$mnt" != "$1" ] || return 0
    done < /proc/self/mountinfo
    return 1
}

same_inode() { [ "$(stat -c %d:%i "$1" 2>/dev/null)" = "$(stat -c %d:%i "$2" 2>/dev/null)" ]; }

# Copies SRC (a file or a directory, with owners, modes and times) to DEST, which does not exist: under a
# temporary name beside DEST, synced, then renamed, so that a power cut leaves no DEST or a complete one.
seed() {
    tmp=${2%/*}/.${2##*/}.seeding
    rm -rf "$tmp" && mkdir -p "${2%/*}" && cp -a "$1" "$tmp" && sync && mv "$tmp" "$2" && sync
}

# Writes ID to DEST (replacing it) the same way.
persist_id() {
    tmp=${2%/*}/.${2##*/}.seeding
    rm -f "$tmp" && mkdir -p "${2%/*}" && printf '%s\n' "$1" > "$tmp" && chmod 0444 "$tmp" && sync &&
        mv -f "$tmp" "$2" && sync
}

bind() { # SRC PATH [ro]
    mount -o bind "$1" "$2" || return 1
    [ -z "${3:-}" ] || mount -o remount,bind,ro "$2"
}

# /etc/machine-id. The image ships it empty (oe-core's read-only-rootfs); PID 1 then generates a transient ID at
# start, writes it to /run/machine-id and bind-mounts that over /etc/machine-id. The first boot persists that ID;
# every boot binds the persisted one over PID 1's (stacked: no moment without an ID), read-only; the mount
# propagates onto /run/machine-id too (PID 1's bind is a peer of /run's mount). PID 1 keeps its transient ID for
# the boot; journald, started long before the state partition can be mounted, is restarted so that it logs
# under the persisted ID from now on.
machine_id() { # COPY
    current=$(first_line /etc/machine-id)
    saved=$(first_line "$1")
    if ! valid_id "$saved"; then
        [ ! -e "$1" ] || log "WARNING: $1 holds no machine ID ('$saved'): replaced by the current one"
        if ! valid_id "$current"; then
            fail "/etc/machine-id: '$current' is no machine ID: nothing to persist"
            return
        fi
        persist_id "$current" "$1" || { fail "/etc/machine-id: cannot write $1"; return; }
        log "/etc/machine-id: first boot: machine ID $current persisted in $1"
        saved=$current
    fi
    bind "$1" /etc/machine-id ro || { fail "/etc/machine-id: bind mount of $1 failed"; return; }
    if [ "$saved" != "$current" ]; then
        log "/etc/machine-id: machine ID $saved (PID 1, and what started before this, have the transient $current)"
        journal_restart=1
    fi
}

bind_entry() { # PATH as listed (a trailing / for a directory)
    path=${1%/}
    copy=$STATE$path
    case $1 in
        /*/) kind=-d what=directory ;;
        /*) kind=-f what=file ;;
        *) fail "'$1' is not an absolute path"; return ;;
    esac
    if ! test "$kind" "$path"; then
        fail "$path: no $what to mount on in the root file system (root-overlay.sh --image creates it)"
        return
    fi
    if same_inode "$copy" "$path"; then
        log "$path: already bound"
        return
    fi
    if [ "$path" = /etc/machine-id ]; then
        machine_id "$copy"
        return
    fi
    if [ ! -e "$copy" ]; then
        seed "$path" "$copy" || { fail "$path: cannot seed $copy"; return; }
        log "$path: first boot: $copy seeded from the root file system"
    elif ! test "$kind" "$copy"; then
        fail "$path: $copy is not a $what: left alone, not mounted"
        return
    fi
    bind "$copy" "$path" || fail "$path: bind mount of $copy failed"
}

# PID 1 set the kernel hostname from the image's /etc/hostname at start; /etc/hostname now reads the persistent
# copy (hostname(5): the first line that is not a comment).
set_hostname() {
    name=
    if [ -r /etc/hostname ]; then
        while read -r line || [ -n "$line" ]; do
            case $line in '' | '#'*) continue ;; esac
            name=$line
            break
        done < /etc/hostname
    fi
    [ -n "$name" ] || return 0
    case $name in *[!A-Za-z0-9.-]*)
        log "WARNING: /etc/hostname: '$name' is not a host name the kernel can take as is: left to systemd"
        return 0 ;;
    esac
    [ ${#name} -le 64 ] || { log "WARNING: /etc/hostname: '$name' is longer than 64 characters"; return 0; }
    old=$(first_line /proc/sys/kernel/hostname)
    [ "$name" != "$old" ] || return 0
    if printf '%s' "$name" > /proc/sys/kernel/hostname; then
        log "hostname $name from /etc/hostname (PID 1 had set $old from the image's)"
    else
        fail "cannot set the hostname to $name"
    fi
}

boot() { # LIST
    if ! is_mount_point "${STATE%/*}"; then
        echo "root-overlay: ${STATE%/*} is not mounted: nothing is bound, nothing persists" >&2
        exit 1
    fi
    while read -r kind path target; do
        case $kind in
            '' | '#'*) ;;
            bind) bind_entry "$path" ;;
            link)
                if [ "$(readlink "$path" 2>/dev/null)" != "$target" ]; then
                    fail "$path: not a symlink to $target (root-overlay.sh --image makes it): its tools cannot persist it"
                fi ;;
            *) fail "$1: unknown entry '$kind $path'" ;;
        esac
    done < "$1"
    set_hostname
    if [ -n "$journal_restart" ]; then
        systemctl --no-block try-restart systemd-journald.service || fail "cannot restart systemd-journald"
    fi
    exit "$status"
}

image() { # ROOT LIST
    while read -r kind path target; do
        case $kind in
            '' | '#'*) ;;
            bind)
                p=$1${path%/}
                case $path in
                    */) [ -d "$p" ] || mkdir -p "$p" || fail "$path: cannot create the directory" ;;
                    *)
                        if [ ! -e "$p" ] && [ ! -L "$p" ]; then
                            { mkdir -p "${p%/*}" && : > "$p"; } || fail "$path: cannot create the file"
                        elif [ ! -f "$p" ]; then
                            fail "$path: not a file in the image"
                        fi ;;
                esac ;;
            link)
                p=$1$path
                t=${p%/*}/$target
                if [ -L "$p" ]; then
                    [ "$(readlink "$p")" = "$target" ] || fail "$path: a symlink to $(readlink "$p"), not $target"
                    continue
                fi
                if [ -e "$p" ]; then
                    if [ -e "$t" ]; then
                        fail "$path: both it and $target exist in the image"
                        continue
                    fi
                    { mkdir -p "${t%/*}" && mv "$p" "$t"; } || { fail "$path: cannot move it to $target"; continue; }
                fi
                ln -s "$target" "$p" || fail "$path: cannot make the link" ;;
            *) fail "$2: unknown entry '$kind $path'" ;;
        esac
    done < "$2"
    exit "$status"
}

if [ "${1:-}" = --image ]; then
    [ $# -ge 2 ] || { echo "usage: root-overlay.sh --image ROOT [LIST]" >&2; exit 2; }
    image "$2" "${3:-$2$LIST}"
fi
boot "${1:-$LIST}"
