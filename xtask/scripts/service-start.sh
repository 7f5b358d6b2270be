# Starts a role service detached unless it already runs, and prints "pid=<pid>".
# The binary and its config.json are in the host's folder; the service logs to service.log.
# Parameters: HOST_DIR, SERVICE (the binary's name).
binary="$HOST_DIR/$SERVICE"
config="$HOST_DIR/config.json"

# Ours when the command line names this host's binary and config.
find_service() {
  local cmdline
  for proc in /proc/[0-9]*; do
    cmdline=$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null) || continue
    if [ "$cmdline" = "$binary --config $config " ]; then
      echo "${proc#/proc/}"
      return 0
    fi
  done
  return 1
}

if ! pid=$(find_service); then
  # setsid: the service leaves this script's session and survives it.
  setsid "$binary" --config "$config" < /dev/null >> "$HOST_DIR/service.log" 2>&1 &
  pid=$!
fi
echo "pid=$pid"
