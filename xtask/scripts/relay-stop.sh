# Stops the host's floor relay, if it runs. Parameters: HOST_DIR.
if pid=$(find_process "$HOST_DIR/relay" --config "$HOST_DIR/relay.json"); then
  stop_process "$pid" 5
fi
