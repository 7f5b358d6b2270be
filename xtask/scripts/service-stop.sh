# Stops a host's role service gracefully: SIGTERM lets it finish the requests in flight, SIGKILL
# follows after GRACE seconds. Nothing to do when it does not run.
# Parameters: HOST_DIR, SERVICE, SUPERVISOR, UNIT_NAME (as for service-start), GRACE.
if [ "$SUPERVISOR" = systemd ]; then
  stop_unit
fi
if pid=$(find_process "$HOST_DIR/$SERVICE" --config "$HOST_DIR/config.json"); then
  stop_process "$pid" "$GRACE"
fi
