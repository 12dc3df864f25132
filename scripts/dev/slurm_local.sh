#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing `--launcher slurm` with real srun (CPU, gloo).
#
#   bash scripts/dev/slurm_local.sh start    # install slurm-wlm + munge if missing (apt, root), start the daemons
#   bash scripts/dev/slurm_local.sh status   # sinfo
#   bash scripts/dev/slurm_local.sh stop
#
# It writes /etc/slurm/slurm.conf only when there is none or when the one there is its own (first line below);
# a machine that already has a Slurm configuration is left alone. State and logs go to $LOCE_SLURM_DIR
# (default /tmp/loce-slurm). Needs root: it is meant for throw-away machines (CI, containers).
set -euo pipefail

DIR="${LOCE_SLURM_DIR:-/tmp/loce-slurm}"
CONF=/etc/slurm/slurm.conf
# (the path it was written from before scripts/ was split: slurm.conf files written then stay recognised as its own)
MARK="# written by loce scripts/slurm_local.sh"

die() { echo "slurm_local: $*" >&2; exit 1; }

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are missing and installing them needs root"
    echo "slurm_local: installing slurm-wlm and munge (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    if [ -f "$CONF" ] && [ "$(head -n1 "$CONF")" != "$MARK" ]; then
        echo "slurm_local: $CONF exists and is not ours: using it as it is"
        return
    fi
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(getconf _NPROCESSORS_ONLN)"  # not nproc: it honours OMP_NUM_THREADS
    mem="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    mkdir -p "$(dirname "$CONF")" "$DIR/state" "$DIR/spool" "$DIR/log"
    cat > "$CONF" <<EOF
$MARK
ClusterName=loce-local
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c munged 2>/dev/null || munged --force
    else
        munged --force
    fi
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "munged did not come up"
}

start() {
    install
    write_conf
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld -c
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 40); do
        if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            sinfo
            return
        fi
        sleep 0.5
    done
    tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    die "the node did not become idle (logs above)"
}

stop() {
    pkill -x slurmd || true
    pkill -x slurmctld || true
    for _ in $(seq 40); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || return 0
        sleep 0.25
    done
    die "slurmd/slurmctld still running"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
