# Functions every script gets, after its parameters.

# Prints the pid of the live process whose command line is exactly the words given (a process
# is identified by the config file on its command line; a pid file alone may be stale).
find_process() {
  local expected="$* " cmdline
  for proc in /proc/[0-9]*; do
    cmdline=$(tr '\0' ' ' 2>/dev/null < "$proc/cmdline") || continue
    if [ "$cmdline" = "$expected" ]; then
      echo "${proc#/proc/}"
      return 0
    fi
  done
  return 1
}

# Prints "pid=<pid> start_ticks=<ticks>" for a live process. The start time (field 22 of
# /proc/PID/stat) lets a later run tell this process from an unrelated one given the same pid.
report_process() {
  local stat fields
  if ! stat=$(cat 2>/dev/null < "/proc/$1/stat"); then
    echo "process $1 exited right after it started" >&2
    return 1
  fi
  read -r -a fields <<< "${stat##*) }"
  echo "pid=$1 start_ticks=${fields[19]}"
}

# True while a process runs (a zombie, which no longer does anything, counts as gone).
is_alive() {
  local stat fields
  stat=$(cat 2>/dev/null < "/proc/$1/stat") || return 1
  read -r -a fields <<< "${stat##*) }"
  [ "${fields[0]}" != Z ]
}

# Stops a process: SIGTERM lets it finish what it is doing, SIGKILL follows after GRACE
# seconds (the second argument); returns once it is gone, saying "stopped pid=<pid>".
stop_process() {
  local pid=$1 deadline=$((SECONDS + $2))
  kill -TERM "$pid" 2> /dev/null || return 0
  while is_alive "$pid"; do
    if [ "$SECONDS" -ge "$((deadline + 10))" ]; then
      echo "process $pid did not exit after SIGKILL" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -KILL "$pid" 2> /dev/null || true
    fi
    sleep 0.1
  done
  echo "stopped pid=$pid"
}

# Places this script, and so everything it starts, in the host's cgroup: its CPU quota and
# memory limit then hold for them. CGROUP_DIRS, when the host has a group: its folders, one
# per line.
enter_cgroup() {
  local dir
  while read -r dir; do
    [ -n "$dir" ] || continue
    if [ ! -d "$dir" ]; then
      echo "the host's cgroup $dir is gone (was the machine restarted?); run \`$XTASK teardown\` and provision again" >&2
      return 1
    fi
    echo "$BASHPID" > "$dir/cgroup.procs"
  done <<< "${CGROUP_DIRS:-}"
}

# Installs the unit UNIT_NAME from the text UNIT (rendered by xtask) and enables it, so it starts
# at every boot; only a changed text makes systemd read its units again.
install_unit() {
  local path="/etc/systemd/system/$UNIT_NAME" current
  current=$(cat "$path" 2> /dev/null) || current=""
  if [ "$current" != "$(printf '%s' "$UNIT")" ]; then
    printf '%s\n' "$UNIT" > "$path.new"
    mv -f "$path.new" "$path"
    systemctl daemon-reload
  fi
  systemctl enable --quiet "$UNIT_NAME"
}

# Stops the unit UNIT_NAME (its stop timeout is the grace: SIGTERM, then SIGKILL), saying
# "stopped pid=<pid>" when something ran; nothing to do when it is not there or not running.
stop_unit() {
  local pid
  pid=$(systemctl show --property MainPID --value "$UNIT_NAME" 2> /dev/null) || pid=0
  systemctl stop "$UNIT_NAME" 2> /dev/null || true
  if [ -n "$pid" ] && [ "$pid" != 0 ]; then
    echo "stopped pid=$pid"
  fi
}
