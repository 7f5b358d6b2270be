# Removes what the deployment made on a machine it does not own, for one host: its unit
# (stopped, disabled, deleted), any of its processes still running outside the unit (a floor
# relay a bench left included), the service's own account, a copy fetch-results staged in the
# login user's home, the host's folder (data, configs, logs, secrets) and the deployment's
# folder once empty. Packages stay. Prints
# what it removed, a line each.
# Parameters: HOST_DIR, UNIT_NAME, SERVICE (the service's binary; empty on a database host),
# ACCOUNT (the service's account; empty on a database host), GRACE.
unit="/etc/systemd/system/$UNIT_NAME"
if [ -e "$unit" ]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now --quiet "$UNIT_NAME" 2> /dev/null || true
  fi
  rm -f "$unit"
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed "$UNIT_NAME" 2> /dev/null || true
  fi
  echo "the unit $UNIT_NAME"
fi
if pid=$(find_process mariadbd --defaults-file="$HOST_DIR/my.cnf"); then
  stop_process "$pid" "$GRACE" > /dev/null
  echo "mariadbd (pid $pid)"
fi
if [ -n "$SERVICE" ] && pid=$(find_process "$HOST_DIR/$SERVICE" --config "$HOST_DIR/config.json"); then
  stop_process "$pid" "$GRACE" > /dev/null
  echo "$SERVICE (pid $pid)"
fi
if [ -n "$SERVICE" ] && pid=$(find_process "$HOST_DIR/relay" --config "$HOST_DIR/relay.json"); then
  stop_process "$pid" 5 > /dev/null
  echo "the bench's floor relay (pid $pid)"
fi
if [ -n "$ACCOUNT" ] && id "$ACCOUNT" > /dev/null 2>&1; then
  userdel "$ACCOUNT"
  echo "the account $ACCOUNT"
fi
login="${SUDO_USER:-$(id -un)}"
home=$(getent passwd "$login" | cut -d: -f6)
if [ -n "$home" ] && [ -e "$home/xtask-fetch" ]; then
  rm -rf "$home/xtask-fetch"
  echo "the folder $home/xtask-fetch"
fi
if [ -e "$HOST_DIR" ]; then
  cd /
  rm -rf "$HOST_DIR"
  echo "the folder $HOST_DIR"
fi
root=$(dirname "$HOST_DIR")
if [ -d "$root" ] && rmdir "$root" 2> /dev/null; then
  echo "the folder $root"
fi
