# Makes sure MariaDB (server and client) and sysbench are installed.
# As root, missing packages are installed with apt-get; otherwise the exact command is printed.
# Parameters: none (TOOLS_PATH is set by the header).
packages="mariadb-server mariadb-client sysbench"
missing=()
for program in mariadbd mariadb-install-db mariadb mariadb-admin sysbench; do
  PATH="$TOOLS_PATH" command -v "$program" >/dev/null 2>&1 || missing+=("$program")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing programs: ${missing[*]}. Install them with: sudo apt-get install -y $packages" >&2
  exit 3
fi
echo "installing $packages (missing: ${missing[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq $packages >&2
for program in "${missing[@]}"; do
  if ! PATH="$TOOLS_PATH" command -v "$program" >/dev/null 2>&1; then
    echo "apt-get installed $packages but $program is still not found in $TOOLS_PATH" >&2
    exit 3
  fi
done
