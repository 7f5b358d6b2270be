# Moves a stopped server's data folder aside (kept, with the time in its name) so the next
# start initializes a fresh one; prints where it went.
# Parameters: HOST_DIR.
if find_process mariadbd --defaults-file="$HOST_DIR/my.cnf" > /dev/null; then
  echo "the server of $HOST_DIR still runs: stop it first" >&2
  exit 1
fi
aside="$HOST_DIR/data.diverged-$(date -u +%Y%m%dT%H%M%SZ)"
mv "$HOST_DIR/data" "$aside"
rm -f "$HOST_DIR/data.initialized"
echo "$aside"
