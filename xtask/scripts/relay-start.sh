# Starts the host's floor relay (the `relay` binary and its relay.json, in the host's folder)
# unless it already runs, waits until it accepts connections on ADDRESS:PORT, and prints its
# identity (report_process). It runs in the host's cgroup, as the service beside it does.
# Parameters: HOST_DIR, ADDRESS, PORT.
binary="$HOST_DIR/relay"
config="$HOST_DIR/relay.json"
if ! pid=$(find_process "$binary" --config "$config"); then
  enter_cgroup
  RUST_LOG=warn setsid "$binary" --config "$config" < /dev/null > "$HOST_DIR/relay.log" 2>&1 &
  pid=$!
fi
deadline=$((SECONDS + 10))
until (exec 3<> "/dev/tcp/$ADDRESS/$PORT") 2> /dev/null; do
  if ! is_alive "$pid" || [ "$SECONDS" -ge "$deadline" ]; then
    echo "the floor relay does not listen on $ADDRESS:$PORT; the end of its log:" >&2
    tail -n 5 "$HOST_DIR/relay.log" >&2 2> /dev/null || true
    exit 1
  fi
  sleep 0.1
done
report_process "$pid"
