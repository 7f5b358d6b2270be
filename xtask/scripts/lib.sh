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
