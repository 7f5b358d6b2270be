# Stops the host's database server (the mariadbd started with its my.cnf), whether or not a
# run recorded it: shut down cleanly, killed after GRACE seconds. Nothing to do when none runs.
# Where systemd keeps it (SUPERVISOR=systemd), its unit is stopped and stays enabled: the server
# starts again at the next boot, or when a step starts it.
# Parameters: HOST_DIR, GRACE, SUPERVISOR, UNIT_NAME.
if [ "$SUPERVISOR" = systemd ]; then
  stop_unit
fi
# A server started outside its unit (by hand) is the host's too.
if pid=$(find_process mariadbd --defaults-file="$HOST_DIR/my.cnf"); then
  stop_process "$pid" "$GRACE"
fi
