# Stops the host's database server (the mariadbd started with its my.cnf), whether or not a
# run recorded it: shut down cleanly, killed after GRACE seconds. Nothing to do when none runs.
# Parameters: HOST_DIR, GRACE.
if pid=$(find_process mariadbd --defaults-file="$HOST_DIR/my.cnf"); then
  stop_process "$pid" "$GRACE"
fi
