#!/usr/bin/env bash
# A real one-node Slurm on this machine, for the end-to-end launcher test (tests/launch/test_slurm_e2e.py).
#
#   scripts/slurm_local.sh start    # apt-installs slurmctld/slurmd/slurm-client/munge if missing, then starts munged,
#                                   # slurmctld and slurmd; prints "started" (it started them) or "running" (already up)
#   scripts/slurm_local.sh stop     # stops the daemons this script started (by the PIDs in their pid files)
#   scripts/slurm_local.sh status   # sinfo
#
# Needs root on Debian 12 (Slurm 22.05): no systemd, no cgroups (proctrack/linuxproc, task/none), one partition
# `debug` holding this node with all its CPUs. The config goes to /etc/slurm/slurm.conf only if that file is absent
# or was written by this script (the marker line below): a machine's own Slurm is never overwritten.
set -euo pipefail
export PATH="/usr/sbin:/sbin:${PATH}"  # the daemons live in sbin, which a non-login PATH may lack

MARKER="# written by cod-megatron scripts/slurm_local.sh"
CONF=/etc/slurm/slurm.conf
STATE=/var/spool/cod-slurm
LOGS=/var/log/cod-slurm
PIDS=/run/cod-slurm
NODE="$(hostname -s)"
START_TIMEOUT_S="${COD_SLURM_START_TIMEOUT_S:-60}"

die() { echo "slurm_local.sh: $*" >&2; exit 1; }

install_packages() {  # the Slurm test's only system dependencies; `ip` (iproute2) is what the job script reads
  local missing=() packages=()
  local -A package_of=([slurmctld]=slurmctld [slurmd]=slurmd [sbatch]=slurm-client [munged]=munge [ip]=iproute2)
  for bin in slurmctld slurmd sbatch munged ip; do
    command -v "$bin" >/dev/null || { missing+=("$bin"); packages+=("${package_of[$bin]}"); }
  done
  ((${#missing[@]} == 0)) && return 0
  [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]} and not root: cannot apt-get install ${packages[*]}"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get (the script knows Debian/Ubuntu only)"
  echo "slurm_local.sh: installing ${packages[*]} (apt-get)" >&2
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
    || die "apt-get install ${packages[*]} failed"
}

write_conf() {
  if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to replace this machine's Slurm config"
  fi
  local cpus mem_mb
  cpus="$(nproc)"
  mem_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))  # leave 10 % to the OS
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS" "$PIDS"
  cat >"$CONF" <<EOF
$MARKER
ClusterName=cod-local
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ReturnToService=2
KillWait=10
SchedulerParameters=sched_interval=5,bf_interval=5
MinJobAge=600
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
  local pidfile=/run/munge/munged.pid
  pid_alive "$pidfile" && return 0
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=$pidfile" || die "munged did not start"
  touch "$PIDS/munged.ours"
}

wait_ready() {  # the node answers `srun hostname` within START_TIMEOUT_S
  local waited=0
  until timeout 20 srun --nodes=1 --ntasks=1 --time=1 hostname >/dev/null 2>&1; do
    if ((waited >= START_TIMEOUT_S)); then
      sinfo -N -l >&2 || true
      tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
      die "the node did not take a job within ${START_TIMEOUT_S} s (logs above)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

start() {
  if pid_alive "$PIDS/slurmctld.pid" && pid_alive "$PIDS/slurmd.pid" && sinfo >/dev/null 2>&1; then
    echo running
    return 0
  fi
  install_packages
  write_conf
  start_munge
  pid_alive "$PIDS/slurmctld.pid" || /usr/sbin/slurmctld -c -f "$CONF" || die "slurmctld did not start ($LOGS)"
  pid_alive "$PIDS/slurmd.pid" || /usr/sbin/slurmd -f "$CONF" || die "slurmd did not start ($LOGS)"
  wait_ready
  echo started
}

stop_pid() {  # stop_pid NAME PIDFILE: TERM, then KILL after 10 s
  local pidfile="$2" pid
  pid_alive "$pidfile" || return 0
  pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  echo "slurm_local.sh: $1 ($pid) ignored SIGTERM; SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  stop_pid slurmd "$PIDS/slurmd.pid"
  stop_pid slurmctld "$PIDS/slurmctld.pid"
  if [[ -f "$PIDS/munged.ours" ]]; then
    stop_pid munged /run/munge/munged.pid
    rm -f "$PIDS/munged.ours"
  fi
  echo stopped
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) die "usage: $0 start|stop|status" ;;
esac
