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
