# Runs the load generator once; its report is placed at OUT only when it succeeds. The database
# password (for the direct baseline) comes from bench.password, never from a command line.
# Parameters: LOADGEN (the program), ARGS (its options), OUT.
mkdir -p "$(dirname "$OUT")"
# The bench client's own cgroup, if it has one: its quota is the client machine's.
enter_cgroup
# ARGS is several options: split on purpose.
# shellcheck disable=SC2086
if ! LOADGEN_DB_PASSWORD=$(cat bench.password) "$LOADGEN" $ARGS --out "$OUT.tmp" \
    > /dev/null 2> "$OUT.err"; then
  echo "the load generator failed: $(tail -n 5 "$OUT.err")" >&2
  rm -f "$OUT.err" "$OUT.tmp"
  exit 1
fi
rm -f "$OUT.err"
mv -f "$OUT.tmp" "$OUT"
