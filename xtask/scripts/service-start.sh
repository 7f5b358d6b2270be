# Starts a role service unless it already runs, and prints its identity (report_process).
# The binary and its config.json are in the host's folder; the service logs to service.log.
# Parameters: HOST_DIR, SERVICE (the binary's name), SUPERVISOR: "detached" (a process in a
# session of its own, on this machine) or "systemd" (a unit that starts it at boot and restarts
# it when it fails, on a machine of its own), UNIT_NAME, and with systemd UNIT: the unit file's
# text (service.unit.in, rendered).
binary="$HOST_DIR/$SERVICE"
config="$HOST_DIR/config.json"

if [ "$SUPERVISOR" = systemd ]; then
  # The service's own account (the unit's User=): it may enter the host's folder, run the
  # binary and read its config, and nothing else here.
  account="dbcluster-$SERVICE"
  if ! id "$account" > /dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$account"
  fi
  chmod go+x "$(dirname "$HOST_DIR")"
  chown "root:$account" "$HOST_DIR" "$binary"
  chmod 750 "$HOST_DIR" "$binary"
  chown "$account:$account" "$config"
  chmod 600 "$config"
  install_unit
  # Restarted, not only started: a rerun has just replaced the binary or its config.
  systemctl restart "$UNIT_NAME"
  report_process "$(systemctl show --property MainPID --value "$UNIT_NAME")"
  exit 0
fi

if ! pid=$(find_process "$binary" --config "$config"); then
  # The log is capped across restarts: past 10 MB it becomes service.log.1 (the one before
  # is dropped); refusals are logged sampled, so a running service grows it slowly.
  if [ -f "$HOST_DIR/service.log" ] && [ "$(stat -c %s "$HOST_DIR/service.log")" -gt 10485760 ]; then
    mv -f "$HOST_DIR/service.log" "$HOST_DIR/service.log.1"
  fi
  # setsid: the service leaves this script's session and survives it, in the host's cgroup.
  enter_cgroup
  setsid "$binary" --config "$config" < /dev/null >> "$HOST_DIR/service.log" 2>&1 &
  pid=$!
fi
report_process "$pid"
