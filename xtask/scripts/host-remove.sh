# Removes the host's folder and everything in it (data, configs, logs, secrets).
# Parameters: HOST_DIR.
cd /
rm -rf "$HOST_DIR"
