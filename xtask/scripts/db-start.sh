# Initializes a MariaDB data directory once, starts the server unless it already runs, and waits
# until it answers. Prints the running server's identity (report_process).
# Parameters: HOST_DIR (holds my.cnf; data, socket, pid and logs go there too), SUPERVISOR
# ("detached": a process in a session of its own; "systemd": the unit UNIT_NAME, from the text
# UNIT, enabled so the machine starts it at boot and restarts it when it fails); optional:
# WAIT (0: return once the server runs, without waiting for it to answer: Galera nodes that
# re-form a cluster together each wait for the others), START_TIMEOUT (seconds, default 60:
# a joining Galera node answers only after its state transfer).
PATH="$TOOLS_PATH:$PATH"
config="$HOST_DIR/my.cnf"
socket="$HOST_DIR/mariadbd.sock"

find_server() {
  find_process mariadbd --defaults-file="$config"
}

# mariadbd never runs as root: where this script has root, the server drops to the mysql
# account (mariadb-server's), which owns the host's folder and needs a way into it. When a
# folder above it is closed to other users (as /root is), the server runs as root and says so.
choose_account() {
  if [ "$(id -u)" != 0 ]; then
    printf '[mariadbd]\n' > "$HOST_DIR/user.cnf"
    return
  fi
  local account=root
  if id mysql > /dev/null 2>&1; then
    # The deployment's own folder of host folders: enterable, not listable.
    chmod go+x "$(dirname "$HOST_DIR")"
    chown -R mysql:mysql "$HOST_DIR"
    if setpriv --reuid=mysql --regid=mysql --clear-groups test -w "$HOST_DIR"; then
      account=mysql
    else
      echo "note: mariadbd runs as root: the mysql account cannot enter $HOST_DIR (a folder above it is closed to other users); keep the project where others may enter, such as /srv or /opt"
    fi
  fi
  printf '[mariadbd]\nuser=%s\n' "$account" > "$HOST_DIR/user.cnf"
}

if ! find_server > /dev/null; then
  mkdir -p -m 700 "$HOST_DIR/tmp"
  choose_account
  # The marker is written only after a complete initialization: a data directory without it
  # is what an interrupted run left, and is made again.
  if [ ! -e "$HOST_DIR/data.initialized" ]; then
    rm -rf "$HOST_DIR/data"
    if ! mariadb-install-db --defaults-file="$config" --skip-test-db \
        --auth-root-authentication-method=socket --auth-root-socket-user="$(id -un)" \
        > "$HOST_DIR/install-db.log" 2>&1; then
      # The tool's own output is mostly generic advice; the server's error log says why.
      echo "mariadb-install-db failed: $(head -n 2 "$HOST_DIR/install-db.log" | tr '\n' ' ')" >&2
      echo "the end of $HOST_DIR/mariadbd.err:" >&2
      tail -n 15 "$HOST_DIR/mariadbd.err" >&2 || true
      exit 1
    fi
    touch "$HOST_DIR/data.initialized"
  fi
  if [ "$SUPERVISOR" = systemd ]; then
    if ! grep -qx 'user=mysql' "$HOST_DIR/user.cnf"; then
      echo "mariadbd's unit runs it as the mysql account, which cannot use $HOST_DIR" >&2
      exit 1
    fi
    UNIT=${UNIT//@MARIADBD@/$(command -v mariadbd)}
    install_unit
    systemctl reset-failed "$UNIT_NAME" 2> /dev/null || true
    # The unit is of type exec: this returns once the server runs, not once it answers.
    systemctl start "$UNIT_NAME"
  else
    # setsid: the server leaves this script's session and survives it; it stays in the host's
    # cgroup, which this script entered.
    enter_cgroup
    setsid mariadbd --defaults-file="$config" < /dev/null >> "$HOST_DIR/mariadbd.out" 2>&1 &
  fi
elif [ "$SUPERVISOR" = systemd ]; then
  # A server that runs outside its unit (started by hand) is adopted; the unit is installed so
  # that the next boot starts it.
  UNIT=${UNIT//@MARIADBD@/$(command -v mariadbd)}
  install_unit
fi

if [ "${WAIT:-1}" = 0 ]; then
  sleep 0.5
  if ! pid=$(find_server); then
    echo "mariadbd exited while starting; the end of $HOST_DIR/mariadbd.err:" >&2
    tail -n 15 "$HOST_DIR/mariadbd.err" >&2 || true
    exit 1
  fi
  report_process "$pid"
  exit 0
fi
timeout="${START_TIMEOUT:-60}"
deadline=$((SECONDS + timeout))
until mariadb-admin --no-defaults --socket="$socket" --user=root ping > /dev/null 2>&1; do
  if ! pid=$(find_server); then
    echo "mariadbd exited while starting; the end of $HOST_DIR/mariadbd.err:" >&2
    tail -n 15 "$HOST_DIR/mariadbd.err" >&2 || true
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "mariadbd did not answer within $timeout s; see $HOST_DIR/mariadbd.err" >&2
    exit 1
  fi
  sleep 0.1
done
report_process "$(find_server)"
