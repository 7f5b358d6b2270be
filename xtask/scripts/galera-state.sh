# Reports what a Galera node's host holds, one `key=value` per line, for choosing how the
# cluster starts: whether its server runs (and if it answers, its wsrep state), whether its data
# directory was initialized, its saved state (grastate.dat: uuid, seqno, safe_to_bootstrap),
# whether it kept the last primary view (gvwstate.dat: it was killed with the cluster running),
# and for a server that does not run, the position its data recovers to (mariadbd
# --wsrep-recover), which a restart starts from to get an incremental transfer.
# Parameters: HOST_DIR.
PATH="$TOOLS_PATH:$PATH"
config="$HOST_DIR/my.cnf"
data="$HOST_DIR/data"
grastate() {
  sed -n "s/^$1:[[:space:]]*//p" "$data/grastate.dat" 2> /dev/null | head -n 1
}
if find_process mariadbd --defaults-file="$config" > /dev/null; then
  echo "running=1"
  if status=$(mariadb --no-defaults --socket="$HOST_DIR/mariadbd.sock" --user=root -N -B \
      -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_status', 'wsrep_local_state_comment', 'wsrep_last_committed')" 2> /dev/null); then
    echo "$status" | while IFS=$'\t' read -r name value; do
      echo "$name=$value"
    done
  fi
else
  echo "running=0"
fi
[ -e "$HOST_DIR/data.initialized" ] && echo "initialized=1" || echo "initialized=0"
echo "uuid=$(grastate uuid)"
echo "seqno=$(grastate seqno)"
echo "safe_to_bootstrap=$(grastate safe_to_bootstrap)"
[ -e "$data/gvwstate.dat" ] && echo "gvwstate=1" || echo "gvwstate=0"
if ! find_process mariadbd --defaults-file="$config" > /dev/null && [ -e "$HOST_DIR/data.initialized" ]; then
  log="$HOST_DIR/wsrep-recover.log"
  rm -f "$log"
  # The recovery run reads the data directory and exits; it never joins the cluster.
  if mariadbd --defaults-file="$config" --wsrep-recover --log-error="$log" > /dev/null 2>&1; then
    position=$(sed -n 's/.*WSREP: Recovered position: *//p' "$log" | tail -n 1)
    echo "recovered=$position"
  else
    echo "recover_failed=$(tail -n 1 "$log" 2> /dev/null)"
  fi
fi
