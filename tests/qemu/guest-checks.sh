#!/bin/bash
# Runs inside the QEMU guest (installed as /usr/libexec/balena-qemu-checks by build-image.sh): asserts the OS
# policies of conf/ on the booted system and prints one line per check:  CHECK <name> PASS|FAIL|SKIP <detail>
# The harness (run.py) reads them from the virtio-serial port `checks` or, failing that, from the console.
# It boots the same disk twice: the first boot checks the policies, the watchdog and the crash handling, and
# leaves a volume, containers with restart policies and an image loaded through the API behind; the second
# boot (it finds the first boot's marker on the data partition) checks that they survived the reboot.
set -u
. /etc/balena-qemu-test.env 2>/dev/null || true
# The virtio-serial port, decided once (raspi3b has none: the harness reads the console copy then).
PORT=/dev/virtio-ports/checks
for _ in $(seq 100); do [ -e $PORT ] && break; sleep 0.1; done
[ -e $PORT ] || PORT=
NCHECKS=0 NFAILED=0
out() { # one line per message, whatever the details hold
    set -- "$(echo "$*" | tr '\n\r' '  ')"
    echo "$*"
    [ -z "$PORT" ] || echo "$*" > $PORT
}
# Checks of the second boot are named reboot.*
P=
pass() { NCHECKS=$((NCHECKS + 1)); out "CHECK $P$1 PASS ${2:-}"; }
fail() { NCHECKS=$((NCHECKS + 1)); NFAILED=$((NFAILED + 1)); out "CHECK $P$1 FAIL ${2:-}"; }
skip() { NCHECKS=$((NCHECKS + 1)); out "CHECK $P$1 SKIP ${2:-}"; }
# The last line: run.py compares the counts with the lines it parsed (a line lost on the console is a failure).
end() { out "CHECKS END $(cut -d' ' -f1 /proc/uptime) checks=$NCHECKS failed=$NFAILED"; }
check() { # NAME DETAIL COMMAND...: PASS when COMMAND succeeds
    local name=$1 detail=$2; shift 2
    if "$@" >/dev/null 2>&1; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}
eq() { # NAME ACTUAL EXPECTED
    if [ "$2" = "$3" ]; then pass "$1" "$2"; else fail "$1" "got '$2', want '$3'"; fi
}
prop() { systemctl show -P "$2" "$1"; }
be() { timeout 120 balena-engine "$@"; }
# Waits up to $1 s for the command to succeed.
until_ok() { local n=$(($1 * 2)); shift; while [ $n -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; n=$((n - 1)); done; return 1; }
# Lines of a file in the named volume qemu-vol, read by a container.
vol_cat() { be run --rm -v qemu-vol:/data app:1 cat "/data/$1" 2>&1 | tr '\n' ' ' | sed 's/ $//'; }
running() { be ps --format '{{.Names}}' 2>/dev/null | grep -qx "$1"; }
# File $1 of volume qemu-vol reads "$2" (containers write it as they start: wait with until_ok).
vol_is() { [ "$(vol_cat "$1")" = "$2" ]; }

# Persistent state (conf/README.md, "Persistent state"): the state partition's copies, and what is mounted on P
# last (topmost): "FSROOT LABEL OPTIONS", e.g. "/root-overlay/etc/machine-id balena-state ro,noatime".
OVERLAY=/mnt/state/root-overlay
bound() { findmnt -n -l -o TARGET,FSROOT,LABEL,OPTIONS | awk -v p="$1" '$1 == p {r = $2 " " $3 " " $4} END {print r}'; }
# The persistent paths, as the installed list has them (bind entries; a trailing / marks a directory).
overlay_binds() { awk '$1 == "bind" {sub("/$", "", $2); print $2}' /usr/lib/balena-state/root-overlay.conf; }
# A line of `hostnamectl status` (through D-Bus and systemd-hostnamed): "Static hostname", "Machine ID".
hnctl() { timeout 60 hostnamectl status 2>&1 | sed -n "s/^ *$1: //p"; }
# The machine IDs journald started under this boot, in order (its /run/log/journal/ID directories).
journal_dirs() {
    journalctl -b -q -o cat -t systemd-journald | sed -n 's|^Runtime Journal (/run/log/journal/\([0-9a-f]*\)).*|\1|p' |
        uniq | tr '\n' ' '
}
TEST_HOSTNAME=balena-qemu-persisted
NETWORK_FILE=/etc/systemd/network/50-balena-qemu-test.network
CERT_DIR=/etc/balena-engine/certs.d/registry.qemu.test:5000

BOOT_ID=$(cat /proc/sys/kernel/random/boot_id)
# The first boot's record, on the data partition (mnt-data.mount).
MARK=/mnt/data/balena-qemu-test/first-boot

# The second boot: what the first left behind is still there, and came back by itself.
second_boot() {
    local first_id; first_id=$(sed -n 's/^boot_id=//p' "$MARK")
    if [ -n "$first_id" ] && [ "$first_id" != "$BOOT_ID" ]; then pass boot-id "first $first_id, now $BOOT_ID"
    else fail boot-id "first '$first_id', now $BOOT_ID: not a new boot"; fi
    eq fs.root.ro "$(findmnt -n -o OPTIONS / | cut -d, -f1)" ro
    # Images: the preloaded one and the one loaded through the API in the first boot.
    local imgs; imgs=$(be images 2>&1)
    if grep -q '^app  *1 ' <<<"$imgs" && grep -q '^app  *2 ' <<<"$imgs"; then pass images "app:1 and app:2 listed"
    else fail images "$(echo $imgs)"; fi
    eq image.loaded-before-reboot.run "$(be run --rm app:2 echo app2-after-reboot 2>&1)" app2-after-reboot
    local want; want=$(sed -n 's/^app2=//p' "$MARK")
    case $want in sha256:*) eq image.loaded-before-reboot.id "$(be image inspect -f '{{.Id}}' app:2 2>&1)" "$want" ;;
        *) fail image.loaded-before-reboot.id "the first boot recorded no ID ('$want')" ;; esac
    # Restart policies at daemon start: `always` and `unless-stopped` (running when the first boot shut down).
    if until_ok 60 running keeper; then pass container.unless-stopped.back "keeper running"
    else fail container.unless-stopped.back "$(be ps -a 2>&1 | tr '\n' ' ')"; fi
    if until_ok 60 running wd-always; then pass container.always.back "wd-always running"
    else fail container.always.back "$(be ps -a 2>&1 | tr '\n' ' ')"; fi
    # Named volume: keeper appended this boot's ID to the file it wrote in the first boot.
    until_ok 60 vol_is keeper-boots "$first_id $BOOT_ID"
    eq volume.data "$(vol_cat keeper-boots)" "$first_id $BOOT_ID"
    eq volume.marker "$(vol_cat marker)" "written-before-reboot $first_id"
    # The first boot's shutdown stopped the containers gracefully (their TERM traps ran).
    until_ok 60 vol_is wd-always "start term start term start term start"
    eq volume.wd-always "$(vol_cat wd-always)" "start term start term start term start"
    # Persistent state: the first boot's machine ID, hostname, network and engine configuration, bound again from
    # the state partition; PID 1 generated another transient ID, which only it and the early boot saw.
    local mid host
    mid=$(sed -n 's/^machine_id=//p' "$MARK"); host=$(sed -n 's/^hostname=//p' "$MARK")
    eq state.unit "$(systemctl is-active balena-root-overlay.service)" active
    local p b n=0 bad=
    for p in $(overlay_binds); do
        n=$((n + 1)); b=$(bound "$p")
        case $b in "/root-overlay$p balena-state "*) ;; *) bad="$bad $p: '$b';" ;; esac
    done
    if [ -z "$bad" ] && [ $n -ge 4 ]; then pass state.binds "$n paths bound from balena-state again"
    else fail state.binds "$n paths:$bad"; fi
    eq machine-id.same "$(cat /etc/machine-id)" "$mid"
    eq machine-id.systemd-id128 "$(systemd-id128 machine-id 2>&1)" "$mid"
    eq machine-id.hostnamectl "$(hnctl 'Machine ID')" "$mid"
    # journald started before the state partition was mounted, under PID 1's new transient ID; the service
    # restarted it under the persisted one: journalctl reads both journal directories, new entries carry the
    # persisted ID. (/run/machine-id reads the persisted ID too: the bind propagates there, see conf/README.md.)
    local dirs transient; dirs=$(journal_dirs); transient=${dirs%% *}
    if [ ${#transient} = 32 ] && [ "$transient" != "$mid" ]; then
        pass machine-id.transient "PID 1 and journald started with $transient, the system uses $mid"
    else fail machine-id.transient "journald's journal directories this boot: '$dirs', persisted '$mid'"; fi
    eq machine-id.journald-restarted "$dirs" "$transient $mid "
    eq machine-id.run "$(cat /run/machine-id 2>&1)" "$mid"
    echo "machine-id check $BOOT_ID" | systemd-cat -t balena-qemu-mid
    jmid() { journalctl -q -b -t balena-qemu-mid -o export -n 1 | sed -n 's/^_MACHINE_ID=//p'; }
    until_ok 20 sh -c "journalctl -q -b -t balena-qemu-mid -n 1 | grep -q ."
    eq machine-id.journal-entries "$(jmid)" "$mid"
    eq hostname.kernel "$(cat /proc/sys/kernel/hostname)" "$host"
    eq hostname.etc "$(cat /etc/hostname)" "$host"
    eq hostname.hostnamectl "$(hnctl 'Static hostname')" "$host"
    eq network.file "$(cat $NETWORK_FILE 2>&1 | tr '\n' ' ')" "[Match] Name=balena-qemu-test0 [Network] DHCP=yes "
    eq engine.certs "$(cat $CERT_DIR/ca.crt 2>&1)" "qemu-test-ca $mid"
    if touch /etc/.rw-probe 2>/dev/null; then rm -f /etc/.rw-probe; fail fs.etc.write "a file was created in /etc"
    else pass fs.etc.write "EROFS"; fi
    failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')
    eq system.failed-units "${failed% }" ""
    end
}

out "CHECKS BEGIN $(cut -d' ' -f1 /proc/uptime) boot_id=$BOOT_ID"
until_ok 120 mountpoint -q /mnt/data
[ -e "$MARK" ] && P=reboot.

# 1. The engine unit: active (socket activated, Type=notify, READY=1 sent), with the policy of conf/README.md.
state=
for _ in $(seq 240); do
    state=$(systemctl is-active balena-engine.service)
    case $state in active|failed) break ;; esac
    sleep 0.5
done
eq engine.active "$state" active
up_us=$(prop balena-engine.service ActiveEnterTimestampMonotonic)
out "READY engine_active_after_boot_s=$(awk -v u="$up_us" 'BEGIN{printf "%.1f", u/1e6}') kernel_to_now_s=$(cut -d' ' -f1 /proc/uptime)"
[ -n "$P" ] && { second_boot; exit 0; }
eq engine.Type "$(prop balena-engine Type)" notify
eq engine.WatchdogUSec "$(prop balena-engine WatchdogUSec)" 3min
eq engine.WatchdogSignal "$(prop balena-engine WatchdogSignal)" 15
eq engine.TimeoutStartUSec "$(prop balena-engine TimeoutStartUSec)" infinity
eq engine.TimeoutStopUSec "$(prop balena-engine TimeoutStopUSec)" "1min 30s"
eq engine.Restart "$(prop balena-engine Restart)" always
eq engine.RestartUSec "$(prop balena-engine RestartUSec)" 5s
eq engine.KillMode "$(prop balena-engine KillMode)" mixed
eq engine.Delegate "$(prop balena-engine Delegate)" yes
eq engine.OOMScoreAdjust "$(prop balena-engine OOMScoreAdjust)" -900
eq engine.LimitCORESoft "$(prop balena-engine LimitCORESoft)" 0
eq engine.LimitCORE "$(prop balena-engine LimitCORE)" infinity
eq engine.LimitNOFILE "$(prop balena-engine LimitNOFILE)" 1048576
eq engine.TasksMax "$(prop balena-engine TasksMax)" infinity
pid=$(prop balena-engine MainPID)
if [ "${pid:-0}" != 0 ]; then
    eq engine.proc.oom_score_adj "$(cat /proc/$pid/oom_score_adj)" -900
    eq engine.proc.core_soft "$(awk '/Max core file size/{print $5}' /proc/$pid/limits)" 0
    eq engine.proc.exe "$(readlink /proc/$pid/exe)" /usr/bin/balena-engined
else
    fail engine.proc "no MainPID"
fi
eq engine.socket.active "$(systemctl is-active balena-engine.socket)" active
eq engine.socket.mode "$(stat -c '%a %U %G' /run/balena-engine.sock 2>&1)" "660 root balena-engine"
# Every cgroup controller the engine's limits need is there (else it says so at start and in /info, as dockerd).
info=$(be info --format json 2>&1 | tr -d '\n')
eq engine.info.cgroup-warnings "$(echo "$info" | sed -n 's/.*"Warnings": *\(\[[^]]*\]\).*/\1/p')" "[]"
eq engine.info.memory-limit "$(echo "$info" | sed -n 's/.*"MemoryLimit": *\([a-z]*\).*/\1/p')" true

# 2. The out-of-process health check.
if [ "${HAVE_HEALTHCHECK:-0}" = 1 ] && [ -x /usr/bin/balena-engine-healthcheck ]; then
    # The shell reaps the healthcheck, so its own /proc/PID/io then includes the child's I/O.
    hc=$(sh -c 't0=$(date +%s%N); /usr/bin/balena-engine-healthcheck >/dev/null 2>&1; echo "rc=$? ms=$((($(date +%s%N) - t0) / 1000000))"; cat /proc/$$/io')
    rc=$(sed -n 's/^rc=\([0-9]*\).*/\1/p' <<<"$hc"); ms=$(sed -n 's/.*ms=//p' <<<"$hc")
    wb=$(awk '/^write_bytes:/{print $2}' <<<"$hc"); sc=$(awk '/^syscw:/{print $2}' <<<"$hc")
    if [ "$rc" = 0 ]; then pass healthcheck "exit 0 in ${ms} ms"; else fail healthcheck "exit $rc: $(echo $hc)"; fi
    if [ "$wb" = 0 ]; then pass healthcheck.storage-writes "write_bytes 0 ($sc write syscalls: the socket, stdout)"
    else fail healthcheck.storage-writes "write_bytes '$wb'"; fi
else
    skip healthcheck "balena-engine-healthcheck not in the image"
fi

# 3. The preloaded app image (docker-archive loaded into the data partition at build time) runs.
imgs=$(balena-engine images 2>&1)
if grep -q '^app  *1 ' <<<"$imgs"; then pass app.preloaded "app:1 listed"; else fail app.preloaded "$(echo $imgs)"; fi
t0=$(date +%s%N)
run=$(timeout 120 balena-engine run --rm app:1 echo hello-from-container 2>&1); rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $rc = 0 ] && [ "$run" = hello-from-container ]; then pass app.run "output '$run' in ${ms} ms"
else fail app.run "exit $rc in ${ms} ms: $(echo $run | tail -c 300)"; fi
left=$(balena-engine ps -aq 2>&1)
eq app.run.removed "$left" ""

# Devices (cgroup v2 here: an eBPF device program): a container may create device nodes (CAP_MKNOD, as docker)
# but not open the card's; /dev/null works.
rootdev=$(findmnt -n -o MAJ:MIN / | tr -d ' ')
eq container.devices.null "$(be run --rm app:1 sh -c 'echo x > /dev/null && echo ok' 2>&1)" ok
blk=$(be run --rm app:1 sh -c "mknod /tmp/disk b ${rootdev%%:*} ${rootdev##*:} && echo MKNOD-OK && head -c 512 /tmp/disk > /dev/null && echo READ-THE-ROOT-DISK" 2>&1)
case $blk in *MKNOD-OK*"/tmp/disk: Operation not permitted"*) pass container.devices.block-denied "b $rootdev: $blk" ;;
    *) fail container.devices.block-denied "b $rootdev (the node must be created, its read refused): $blk" ;; esac

# 4. RAM, not the card: tmpfs for /tmp, /var/volatile (/var/log, /var/tmp), /run; the root read-only.
eq fs.tmp "$(findmnt -n -o FSTYPE /tmp)" tmpfs
eq fs.var-volatile "$(findmnt -n -o FSTYPE /var/volatile)" tmpfs
eq fs.run "$(findmnt -n -o FSTYPE /run)" tmpfs
eq fs.var-log "$(readlink -f /var/log)" /var/volatile/log
eq fs.var-tmp "$(readlink -f /var/tmp)" /var/volatile/tmp
check fs.var-log.dir "created by tmpfiles" test -d /var/volatile/log
eq fs.run-lock.mode "$(stat -c %a /run/lock)" 1777
eq fs.root.ro "$(findmnt -n -o OPTIONS / | cut -d, -f1)" ro
if touch /.rw-probe 2>/dev/null; then rm -f /.rw-probe; fail fs.root.write "a file was created in /"
else pass fs.root.write "EROFS"; fi
eq fs.root.label "$(findmnt -n -o LABEL /)" balena-rootA
eq fs.data.label "$(findmnt -n -o LABEL /mnt/data)" balena-data
check fs.data.noatime "$(findmnt -n -o OPTIONS /mnt/data)" sh -c 'findmnt -n -o OPTIONS /mnt/data | grep -q noatime'
eq fs.state.label "$(findmnt -n -o LABEL /mnt/state)" balena-state
check fs.engine.data-root "/mnt/data/balena-engine" test -d /mnt/data/balena-engine

# 4b. Persistent state (conf/README.md, "Persistent state"): the first boot with an empty state partition.
#     PID 1 generated a transient machine ID (the image's /etc/machine-id is empty); the service persisted it
#     and bound it back, with /etc/writable, /etc/systemd/network and /etc/balena-engine seeded from the image.
eq state.unit "$(systemctl is-active balena-root-overlay.service)" active
n=0 bad=
for p in $(overlay_binds); do
    n=$((n + 1)); b=$(bound "$p")
    case $b in "/root-overlay$p balena-state "*) ;; *) bad="$bad $p: '$b';" ;; esac
done
if [ -z "$bad" ] && [ $n -ge 4 ]; then pass state.binds "$n paths bound from balena-state: $(overlay_binds | tr '\n' ' ')"
else fail state.binds "$n paths:$bad"; fi
MACHINE_ID=$(cat /etc/machine-id)
case $MACHINE_ID in *[!0-9a-f]*|'') fail machine-id.valid "'$MACHINE_ID'" ;;
    *) if [ ${#MACHINE_ID} = 32 ]; then pass machine-id.valid "$MACHINE_ID"; else fail machine-id.valid "'$MACHINE_ID'"; fi ;; esac
# The image ships /etc/machine-id empty (seen under the mounts, through a non-recursive bind of the root), so
# PID 1 generated the ID; journald started under it once, and was not restarted (the persisted ID is the same).
mkdir -p /run/balena-qemu-rootfs && mount --bind / /run/balena-qemu-rootfs
eq machine-id.image-empty "$(stat -c %s /run/balena-qemu-rootfs/etc/machine-id 2>&1)" 0
umount /run/balena-qemu-rootfs
eq machine-id.from-pid1 "$(journal_dirs)" "$MACHINE_ID "
eq machine-id.persisted "$(cat $OVERLAY/etc/machine-id 2>&1)" "$MACHINE_ID"
case $(bound /etc/machine-id) in *" ro,"*|*" ro") pass machine-id.read-only "$(bound /etc/machine-id)" ;;
    *) fail machine-id.read-only "$(bound /etc/machine-id)" ;; esac
eq machine-id.systemd-id128 "$(systemd-id128 machine-id 2>&1)" "$MACHINE_ID"
eq machine-id.hostnamectl "$(hnctl 'Machine ID')" "$MACHINE_ID"
# Hostname: /etc/hostname links into /etc/writable, seeded with the image's hostname; set it as an operator would.
eq hostname.link "$(readlink /etc/hostname)" writable/hostname
eq hostname.seeded "$(cat $OVERLAY/etc/writable/hostname 2>&1)" balena-qemu
eq hostname.image "$(cat /proc/sys/kernel/hostname)" balena-qemu
sdver=$(systemctl --version | awk 'NR == 1 {print $2}')
if out=$(timeout 60 hostnamectl set-hostname "$TEST_HOSTNAME" 2>&1); then
    pass hostname.hostnamectl "set-hostname $TEST_HOSTNAME (systemd $sdver)"
elif [ "${sdver:-0}" -lt 258 ]; then
    # hostnamed replaces /etc/hostname by rename(2) in /etc; only systemd >= 258 can be told to write where
    # the link points (SYSTEMD_ETC_HOSTNAME, conf/'s drop-in). Set it by hand, through the link.
    skip hostname.hostnamectl "systemd $sdver < 258 cannot write through /etc/hostname's link ($out): written to /etc/hostname instead"
    echo "$TEST_HOSTNAME" > /etc/hostname && echo "$TEST_HOSTNAME" > /proc/sys/kernel/hostname
else
    fail hostname.hostnamectl "systemd $sdver: $out"
fi
eq hostname.persisted "$(cat $OVERLAY/etc/writable/hostname 2>&1)" "$TEST_HOSTNAME"
eq hostname.kernel "$(cat /proc/sys/kernel/hostname)" "$TEST_HOSTNAME"
eq hostname.static "$(hnctl 'Static hostname')" "$TEST_HOSTNAME"
# Network and engine configuration, written where their programs read them.
printf '[Match]\nName=balena-qemu-test0\n[Network]\nDHCP=yes\n' > $NETWORK_FILE
eq network.persisted "$(cat $OVERLAY$NETWORK_FILE 2>&1 | tr '\n' ' ')" "[Match] Name=balena-qemu-test0 [Network] DHCP=yes "
mkdir -p $CERT_DIR && echo "qemu-test-ca $MACHINE_ID" > $CERT_DIR/ca.crt
eq engine.certs.persisted "$(cat $OVERLAY$CERT_DIR/ca.crt 2>&1)" "qemu-test-ca $MACHINE_ID"
if touch /etc/.rw-probe 2>/dev/null; then rm -f /etc/.rw-probe; fail fs.etc.write "a file was created in /etc"
else pass fs.etc.write "EROFS"; fi
sync

# 5. Journal in RAM only.
eq journal.Storage "$(systemd-analyze cat-config systemd/journald.conf | awk -F= '/^Storage=/{v=$2} END{print v}')" volatile
check journal.run "/run/log/journal" test -d /run/log/journal
check journal.no-persistent "no /var/log/journal" test ! -e /var/log/journal
jpath=$(journalctl --header 2>/dev/null | awk '/^File path:/{print $3; exit}')
case $jpath in /run/log/journal/*) pass journal.file "$jpath" ;; *) fail journal.file "journal file '$jpath'" ;; esac
# Bounded: journald states the limit it enforces when it opens the runtime journal ("..., max 32.0M, ...").
eq journal.RuntimeMaxUse "$(systemd-analyze cat-config systemd/journald.conf | awk -F= '/^RuntimeMaxUse=/{v=$2} END{print v}')" 32M
jmax=$(journalctl -b -q -o cat -t systemd-journald 2>/dev/null | sed -n 's/^Runtime Journal .*, max \([0-9.]*[KMG]\), .*/\1/p' | tail -1)
eq journal.enforced-max "$jmax" 32.0M

# 6. Kernel and core dump policy; hardware watchdog; the group for the socket.
eq sysctl.overcommit "$(cat /proc/sys/vm/overcommit_memory)" 1
case $(cat /proc/sys/kernel/core_pattern) in '|'*systemd-coredump*) pass sysctl.core_pattern "$(cat /proc/sys/kernel/core_pattern)" ;;
    *) fail sysctl.core_pattern "$(cat /proc/sys/kernel/core_pattern)" ;; esac
eq coredump.Storage "$(systemd-analyze cat-config systemd/coredump.conf | awk -F= '/^Storage=/{v=$2} END{print v}')" none
eq system.RuntimeWatchdogUSec "$(systemctl show -P RuntimeWatchdogUSec)" 10s
check system.watchdog-device "/dev/watchdog0 (softdog)" test -e /dev/watchdog0
check group.balena-engine "in /etc/group" getent group balena-engine

# 7. Core dumps: a crash in a container is piped to systemd-coredump, logged, and nothing is kept; an opt-in
#    (--ulimit core=-1) raises the container's own limit (LimitCORE=0:infinity leaves the hard limit open).
eq core.container-default "$(timeout 60 balena-engine run --rm app:1 sh -c 'ulimit -c' 2>&1)" 0
eq core.container-optin "$(timeout 60 balena-engine run --rm --ulimit core=-1 app:1 sh -c 'ulimit -c' 2>&1)" unlimited
# Core files on every writable file system (the data partition holds the containers' layers and volumes) and
# the root, listed before and after the crashes (the guest's clock may be anything: raspi3b has no RTC).
cores() { find / /mnt/data /mnt/state /tmp /run /var/volatile -xdev -type f \( -name core -o -name 'core.[0-9]*' \) 2>/dev/null | sort; }
cores > /run/cores.before
since=$(date +%s)
# Not --rm: a core file written into a container's root file system would go with the container.
crash=$(timeout 60 balena-engine run --name crash-default app:1 sh -c 'sh -c "kill -SEGV \$\$"; echo rc=$?' 2>/dev/null)
eq core.crash.default.exit "$crash" rc=139
crash=$(timeout 60 balena-engine run --name crash-optin --ulimit core=-1 app:1 sh -c 'sh -c "kill -SEGV \$\$"; echo rc=$?' 2>/dev/null)
eq core.crash.optin.exit "$crash" rc=139
# systemd-coredump's verdict per crash: "Process N (sh) of user 0 terminated abnormally without generating a
# coredump." (or "... dumped core." if it had kept one), one line each.
verdicts=
for _ in $(seq 120); do
    verdicts=$(journalctl -q -o cat --since "@$since" -t systemd-coredump 2>/dev/null | grep -E 'terminated abnormally|dumped core')
    [ "$(grep -c . <<<"$verdicts")" -ge 2 ] && break; sleep 0.5
done
if [ "$(grep -c . <<<"$verdicts")" -ge 2 ]; then pass core.logged "$(echo "$verdicts" | tr '\n' '|')"
else fail core.logged "systemd-coredump verdicts: $(echo "$verdicts" | tr '\n' '|')"; fi
if [ -n "$verdicts" ] && ! grep -q 'dumped core' <<<"$verdicts" && [ "$(grep -c 'without generating a coredump' <<<"$verdicts")" -ge 2 ]
then pass core.nothing-kept "both crashes: without generating a coredump"
else fail core.nothing-kept "$(echo "$verdicts" | tr '\n' '|')"; fi
cores=$(cores | comm -13 /run/cores.before - | tr '\n' ' ')
eq core.no-file-anywhere "$cores" ""
be rm crash-default crash-optin >/dev/null 2>&1

# 8. Restart=always and socket activation: SIGKILL the daemon; a client that connects meanwhile waits in the
#    socket's backlog and is answered by the next daemon (RestartSec=5s).
old=$(prop balena-engine MainPID); n0=$(prop balena-engine NRestarts)
systemctl kill -s KILL --kill-whom=main balena-engine.service
t0=$(date +%s%N)
again=$(timeout 120 balena-engine images 2>&1); rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $rc = 0 ] && grep -q '^app ' <<<"$again"; then pass engine.restart.client-served "after ${ms} ms"
else fail engine.restart.client-served "exit $rc after ${ms} ms: $(echo $again | tail -c 200)"; fi
for _ in $(seq 60); do [ "$(systemctl is-active balena-engine)" = active ] && break; sleep 0.5; done
new=$(prop balena-engine MainPID); n1=$(prop balena-engine NRestarts)
if [ "$new" != 0 ] && [ "$new" != "$old" ] && [ "$n1" = $((n0 + 1)) ]; then pass engine.restart "pid $old -> $new, NRestarts $n1"
else fail engine.restart "pid $old -> $new, NRestarts $n0 -> $n1"; fi
eq engine.restart.run "$(timeout 120 balena-engine run --rm app:1 echo again 2>&1)" again

# 9. Watchdog: a hung engine (SIGSTOP) misses its pings; systemd sends WatchdogSignal=SIGTERM (with SIGCONT, so
#    that the stopped process runs to handle it): a graceful stop (containers get their stop signal), then
#    Restart=always, and containers with a restart policy come back. The policy's 3 min are shortened to $WD s
#    for the test by a runtime drop-in (RAM only), removed afterwards: long enough that a slow TCG host does not
#    miss a ping (every $WD/2 s) before the SIGSTOP.
WD=60
dropin=/run/systemd/system/balena-engine.service.d
mkdir -p $dropin && printf '[Service]\nWatchdogSec=%s\n' $WD > $dropin/90-qemu-test-watchdog.conf
systemctl daemon-reload && systemctl restart balena-engine.service
eq watchdog.test-interval "$(prop balena-engine WatchdogUSec)" 1min   # WD=60
be volume create qemu-vol >/dev/null 2>&1
be run -d --name wd-always --restart always -v qemu-vol:/data app:1 \
    sh -c 'echo start >> /data/wd-always; trap "echo term >> /data/wd-always; exit 0" TERM; while :; do sleep 1; done' >/dev/null 2>&1
check watchdog.container-up "wd-always, --restart always" until_ok 30 running wd-always
pid=$(prop balena-engine MainPID); n0=$(prop balena-engine NRestarts); since=$(date +%s)
restarted() { local p; p=$(prop balena-engine MainPID); [ "$p" != 0 ] && [ "$p" != "$pid" ] && [ "$(systemctl is-active balena-engine)" = active ]; }
kill -STOP "$pid"
if until_ok $((WD + 150)) restarted; then
    pass watchdog.restarted "SIGSTOP pid $pid -> new pid $(prop balena-engine MainPID) after $(($(date +%s) - since)) s, NRestarts $n0 -> $(prop balena-engine NRestarts)"
else
    fail watchdog.restarted "pid $pid still main after $(($(date +%s) - since)) s: $(systemctl status --no-pager balena-engine 2>&1 | head -5)"
    kill -CONT "$pid" 2>/dev/null
fi
journal=$(journalctl -q -o cat --since "@$since" -u balena-engine.service 2>/dev/null)
j() { grep -m1 -- "$1" <<<"$journal"; }
if j 'Watchdog timeout' >/dev/null; then pass watchdog.fired "$(j 'Watchdog timeout')"; else fail watchdog.fired "no 'Watchdog timeout' in the journal"; fi
if j "Processing signal 'terminated'" >/dev/null; then pass watchdog.sigterm "$(j "Processing signal 'terminated'")"
else fail watchdog.sigterm "the daemon did not log SIGTERM: $(echo "$journal" | tail -5)"; fi
if j 'Daemon shutdown complete' >/dev/null; then pass watchdog.graceful-exit "Daemon shutdown complete"
else fail watchdog.graceful-exit "no clean shutdown logged"; fi
if until_ok 60 running wd-always; then pass watchdog.container-back "wd-always running again"
else fail watchdog.container-back "$(be ps -a 2>&1 | tr '\n' ' ')"; fi
until_ok 60 vol_is wd-always "start term start"
eq watchdog.container-stopped-gracefully "$(vol_cat wd-always)" "start term start"
rm -f $dropin/90-qemu-test-watchdog.conf
systemctl daemon-reload && systemctl restart balena-engine.service
eq watchdog.policy-restored "$(prop balena-engine WatchdogUSec)" 3min

# 10. Leave state for the second boot: an image loaded through the API, a volume, an unless-stopped container.
if be load -i /usr/share/balena-qemu-test/app2.tar >/dev/null 2>&1; then pass image.load-api "app:2 loaded by the daemon"
else fail image.load-api "$(be load -i /usr/share/balena-qemu-test/app2.tar 2>&1)"; fi
be run --rm -v qemu-vol:/data app:1 sh -c "echo written-before-reboot $BOOT_ID > /data/marker" >/dev/null 2>&1
be run -d --name keeper --restart unless-stopped -v qemu-vol:/data app:1 \
    sh -c 'cat /proc/sys/kernel/random/boot_id >> /data/keeper-boots; trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null 2>&1
check container.unless-stopped "keeper running" until_ok 30 running keeper
check container.always "wd-always running" until_ok 60 running wd-always
until_ok 60 vol_is keeper-boots "$BOOT_ID"
eq volume.before-reboot "$(vol_cat keeper-boots)" "$BOOT_ID"

# 11. Nothing failed during boot.
failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')
eq system.failed-units "${failed% }" ""

# The second boot compares app:2's ID with this one: only an ID is recorded.
app2=$(be image inspect -f '{{.Id}}' app:2 2>&1)
case $app2 in sha256:*) ;; *) fail image.app2-id "$app2"; app2= ;; esac
mkdir -p "${MARK%/*}" && printf 'boot_id=%s\napp2=%s\nmachine_id=%s\nhostname=%s\n' "$BOOT_ID" "$app2" "$MACHINE_ID" \
    "$TEST_HOSTNAME" > "$MARK" && sync
end
