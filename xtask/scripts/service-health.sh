# Waits until a role service answers GET /health with 200, for up to TIMEOUT seconds (0: ask
# once). Runs on the service's own host: the other tiers' ports are closed to everyone else.
# A detached service that is not running fails at once. Prints the end of the service's log
# when it gets no healthy answer.
# Parameters: HOST_DIR, SERVICE, SUPERVISOR, ADDRESS, PORT, TIMEOUT.
log_tail() {
  tail -n 15 "$HOST_DIR/service.log" >&2 2> /dev/null || true
}
deadline=$((SECONDS + TIMEOUT))
while :; do
  if [ "$SUPERVISOR" = detached ] \
      && ! find_process "$HOST_DIR/$SERVICE" --config "$HOST_DIR/config.json" > /dev/null; then
    echo "$SERVICE is not running; the end of its log:" >&2
    log_tail
    exit 1
  fi
  status=""
  if exec 3<> "/dev/tcp/$ADDRESS/$PORT"; then
    printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$ADDRESS" >&3
    read -r _ status _ <&3 || true
    exec 3>&-
  fi 2> /dev/null
  if [ "$status" = 200 ]; then
    echo "healthy"
    exit 0
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "no healthy answer from http://$ADDRESS:$PORT/health within $TIMEOUT s (last status: ${status:-none}); the end of its log:" >&2
    log_tail
    exit 1
  fi
  sleep 0.2
done
