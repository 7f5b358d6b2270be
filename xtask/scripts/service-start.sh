# Starts a role service detached unless it already runs, and prints its identity
# (report_process).
# The binary and its config.json are in the host's folder; the service logs to service.log.
# Parameters: HOST_DIR, SERVICE (the binary's name).
binary="$HOST_DIR/$SERVICE"
config="$HOST_DIR/config.json"

if ! pid=$(find_process "$binary" --config "$config"); then
  # setsid: the service leaves this script's session and survives it.
  setsid "$binary" --config "$config" < /dev/null >> "$HOST_DIR/service.log" 2>&1 &
  pid=$!
fi
report_process "$pid"
