#!/bin/bash
# Runs inside the QEMU guest (installed as /usr/libexec/balena-qemu-checks by build-image.sh): asserts the OS
# policies of conf/ on the booted system and prints one line per check:  CHECK <name> PASS|FAIL|SKIP <detail>
# The harness (run.py) reads them from the virtio-serial port `checks` or, failing that, from the console.
set -u
. /etc/balena-qemu-test.env 2>/dev/null || true
PORT=/dev/virtio-ports/checks
for _ in $(seq 50); do [ -e $PORT ] && break; sleep 0.1; done
out() { # one line per message, whatever the details hold
    set -- "$(echo "$*" | tr '\n\r' '  ')"
    echo "$*"
    [ -e $PORT ] && echo "$*" > $PORT
}
pass() { out "CHECK $1 PASS ${2:-}"; }
fail() { out "CHECK $1 FAIL ${2:-}"; }
skip() { out "CHECK $1 SKIP ${2:-}"; }
check() { # NAME DETAIL COMMAND...: PASS when COMMAND succeeds
    local name=$1 detail=$2; shift 2
    if "$@" >/dev/null 2>&1; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}
eq() { # NAME ACTUAL EXPECTED
    if [ "$2" = "$3" ]; then pass "$1" "$2"; else fail "$1" "got '$2', want '$3'"; fi
}
prop() { systemctl show -P "$2" "$1"; }

out "CHECKS BEGIN $(cut -d' ' -f1 /proc/uptime)"

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

# 2. The out-of-process health check.
if [ "${HAVE_HEALTHCHECK:-0}" = 1 ] && [ -x /usr/bin/balena-engine-healthcheck ]; then
    hc=$(/usr/bin/balena-engine-healthcheck 2>&1); rc=$?
    if [ $rc = 0 ]; then pass healthcheck "exit 0"; else fail healthcheck "exit $rc: $hc"; fi
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

# 4. RAM, not the card: tmpfs for /tmp, /var/volatile (/var/log, /var/tmp), /run; the root read-only.
eq fs.tmp "$(findmnt -n -o FSTYPE /tmp)" tmpfs
eq fs.var-volatile "$(findmnt -n -o FSTYPE /var/volatile)" tmpfs
eq fs.run "$(findmnt -n -o FSTYPE /run)" tmpfs
eq fs.var-log "$(readlink -f /var/log)" /var/volatile/log
eq fs.var-tmp "$(readlink -f /var/tmp)" /var/volatile/tmp
check fs.var-log.dir "created by tmpfiles" test -d /var/volatile/log
eq fs.root.ro "$(findmnt -n -o OPTIONS / | cut -d, -f1)" ro
if touch /.rw-probe 2>/dev/null; then rm -f /.rw-probe; fail fs.root.write "a file was created in /"
else pass fs.root.write "EROFS"; fi
eq fs.root.label "$(findmnt -n -o LABEL /)" balena-rootA
eq fs.data.label "$(findmnt -n -o LABEL /mnt/data)" balena-data
check fs.data.noatime "$(findmnt -n -o OPTIONS /mnt/data)" sh -c 'findmnt -n -o OPTIONS /mnt/data | grep -q noatime'
eq fs.state.label "$(findmnt -n -o LABEL /mnt/state)" balena-state
check fs.engine.data-root "/mnt/data/balena-engine" test -d /mnt/data/balena-engine

# 5. Journal in RAM only.
eq journal.Storage "$(systemd-analyze cat-config systemd/journald.conf | awk -F= '/^Storage=/{v=$2} END{print v}')" volatile
check journal.run "/run/log/journal" test -d /run/log/journal
check journal.no-persistent "no /var/log/journal" test ! -e /var/log/journal
jpath=$(journalctl --header 2>/dev/null | awk '/^File path:/{print $3; exit}')
case $jpath in /run/log/journal/*) pass journal.file "$jpath" ;; *) fail journal.file "journal file '$jpath'" ;; esac

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
since=$(date +%s)
crash=$(timeout 60 balena-engine run --rm --ulimit core=-1 app:1 sh -c 'sh -c "kill -SEGV \$\$"; echo rc=$?' 2>/dev/null)
eq core.crash.exit "$crash" rc=139
logged=
for _ in $(seq 40); do
    logged=$(journalctl -q -o cat --since "@$since" -t systemd-coredump 2>/dev/null | head -1)
    [ -n "$logged" ] && break; sleep 0.5
done
if [ -n "$logged" ]; then pass core.logged "$logged"; else fail core.logged "no systemd-coredump message in the journal"; fi
kept=$(find /var/lib/systemd/coredump -type f 2>/dev/null | wc -l)
eq core.nothing-kept "$kept" 0

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

# 9. Nothing failed during boot.
failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')
eq system.failed-units "${failed% }" ""

out "CHECKS END $(cut -d' ' -f1 /proc/uptime)"
