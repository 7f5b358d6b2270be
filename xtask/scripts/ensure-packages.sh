# Makes sure the programs a host needs are installed (a database host: MariaDB's server and
# client, and sysbench; the bench client: sysbench).
# As root, missing packages are installed with apt-get; otherwise the exact command is printed.
# Parameters: PROGRAMS, PACKAGES, FILES (space-separated; FILES: paths that must exist).
packages="$PACKAGES"
missing=()
for program in $PROGRAMS; do
  PATH="$TOOLS_PATH" command -v "$program" >/dev/null 2>&1 || missing+=("$program")
done
for file in $FILES; do
  [ -e "$file" ] || missing+=("$file")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing programs: ${missing[*]}. Install them with: sudo apt-get install -y $packages" >&2
  exit 3
fi
# A fresh cloud instance is still being set up by cloud-init, which holds apt's locks.
if command -v cloud-init > /dev/null 2>&1; then
  cloud-init status --wait > /dev/null 2>&1 || true
fi
echo "installing $packages (missing: ${missing[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq $packages >&2
for program in "${missing[@]}"; do
  if ! PATH="$TOOLS_PATH" command -v "$program" >/dev/null 2>&1 && [ ! -e "$program" ]; then
    echo "apt-get installed $packages but $program is still not found (in $TOOLS_PATH)" >&2
    exit 3
  fi
done
# The package's own server (started by systemd where it runs) is not part of the deployment,
# which starts a server per host with its own config: it is stopped and kept from starting.
if [ -d /run/systemd/system ] && [[ " $packages " == *" mariadb-server "* ]]; then
  systemctl disable --now mariadb > /dev/null 2>&1 || true
fi
