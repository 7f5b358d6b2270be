# Makes a stopped server start empty at its next start, as if new: for a host `scale` is adding
# whose copy of the data did not finish (db-start initializes a data folder without its marker
# afresh).
# Parameters: HOST_DIR.
if find_process mariadbd --defaults-file="$HOST_DIR/my.cnf" > /dev/null; then
  echo "the server of $HOST_DIR still runs: stop it first" >&2
  exit 1
fi
rm -f "$HOST_DIR/data.initialized"
