# Prints the CPU time the host's server or service has used so far (user and system, in clock
# ticks) and the clock ticks per second: two samples around a load test give its CPU cost.
# Parameters: HOST_DIR, PROGRAM ("mariadbd", the service's binary name, or "relay": the floor
# relay beside the service).
if [ "$PROGRAM" = mariadbd ]; then
  pid=$(find_process mariadbd --defaults-file="$HOST_DIR/my.cnf") || pid=""
elif [ "$PROGRAM" = relay ]; then
  pid=$(find_process "$HOST_DIR/relay" --config "$HOST_DIR/relay.json") || pid=""
else
  pid=$(find_process "$HOST_DIR/$PROGRAM" --config "$HOST_DIR/config.json") || pid=""
fi
if [ -z "$pid" ]; then
  echo "$PROGRAM is not running in $HOST_DIR" >&2
  exit 1
fi
stat=$(cat "/proc/$pid/stat")
read -r -a fields <<< "${stat##*) }"
# utime and stime are fields 14 and 15 of /proc/PID/stat: 12 and 13 after the command name.
echo "$((fields[11] + fields[12])) $(getconf CLK_TCK)"
