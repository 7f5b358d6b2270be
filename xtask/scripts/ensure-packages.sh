# Makes sure the programs a host needs are installed (a database host: MariaDB's server and
# client, and sysbench; the bench client: sysbench).
# As root, missing packages are installed with apt-get, and `installed=<packages>` names the
# ones that were not there before; otherwise the exact command is printed.
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
new=()
for package in $packages; do
  if ! dpkg-query -W -f='${Status}\n' "$package" 2> /dev/null | grep -q '^install ok installed$'; then
    new+=("$package")
  fi
done
# A fresh cloud instance is still being set up by cloud-init, which holds apt's locks.
if command -v cloud-init > /dev/null 2>&1; then
  cloud-init status --wait > /dev/null 2>&1 || true
fi
# The distribution's own server, which the package would start now, is not part of the
# deployment (each host runs a server of its own config): no service a package brings starts
# during the install (policy-rc.d, Debian's switch for that), and the server's is disabled after.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# Written by cargo xtask while it installs packages.\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
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
if [ -d /run/systemd/system ] && [[ " ${new[*]} " == *" mariadb-server "* ]]; then
  systemctl disable --now --quiet mariadb 2> /dev/null || true
fi
echo "installed=${new[*]}"
