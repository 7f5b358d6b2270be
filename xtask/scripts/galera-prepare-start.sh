# Writes how a Galera node's server starts next (read by its my.cnf): as the first node of a
# new cluster (BOOTSTRAP=1; its grastate.dat is marked safe to bootstrap from), or joining, from
# the position its data recovered to (START_POSITION, `uuid:seqno`; empty: a full transfer).
# A new node may be told its donor (DONOR, a node's name): a full transfer blocks the
# donor's writes, so it is never the writer.
# Parameters: HOST_DIR, BOOTSTRAP, START_POSITION; optional: DONOR.
start="$HOST_DIR/galera-start.cnf"
{
  echo "# How this node starts next; rewritten by cargo xtask before every start."
  echo "[mariadbd]"
  if [ "$BOOTSTRAP" = 1 ]; then
    echo "wsrep_new_cluster"
  fi
  if [ -n "$START_POSITION" ]; then
    echo "wsrep_start_position=$START_POSITION"
  fi
  if [ -n "${DONOR:-}" ]; then
    echo "wsrep_sst_donor=$DONOR"
  fi
} > "$start.tmp"
mv "$start.tmp" "$start"
if [ "$BOOTSTRAP" = 1 ] && [ -e "$HOST_DIR/data/grastate.dat" ]; then
  sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' "$HOST_DIR/data/grastate.dat"
fi
