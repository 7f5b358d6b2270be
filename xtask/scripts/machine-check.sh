# Reports what a machine offers, run as the login user (no sudo: whether sudo works without a
# password is one of the questions), one `key=value` per line: sudo (ok, root, password,
# absent), apt, os, arch, glibc, systemd (it runs as process 1), pid1, a `taken=<port> <program>`
# for each of PORTS something already listens on at ADDRESS, and source: the address its
# connections to ROUTE_TO come from.
# Parameters: ADDRESS (where the host will listen), PORTS (space-separated), ROUTE_TO.
if [ "$(id -u)" = 0 ]; then
  echo "sudo=root"
elif ! command -v sudo > /dev/null 2>&1; then
  echo "sudo=absent"
elif sudo -n true > /dev/null 2>&1; then
  echo "sudo=ok"
else
  echo "sudo=password"
fi
command -v apt-get > /dev/null 2>&1 && echo "apt=1" || echo "apt=0"
os=$(. /etc/os-release 2> /dev/null && echo "${PRETTY_NAME:-$ID}") || os=""
echo "os=$os"
echo "arch=$(uname -m)"
glibc=$(getconf GNU_LIBC_VERSION 2> /dev/null) || glibc=""
echo "glibc=${glibc#glibc }"
[ -d /run/systemd/system ] && echo "systemd=1" || echo "systemd=0"
echo "pid1=$(cat /proc/1/comm 2> /dev/null || true)"
for port in $PORTS; do
  # Something accepts a connection there: the port is taken (for every address, or for this).
  if timeout 3 bash -c "exec 3<> /dev/tcp/$ADDRESS/$port" 2> /dev/null; then
    program=""
    if command -v ss > /dev/null 2>&1 && sudo -n true > /dev/null 2>&1; then
      program=$(sudo -n ss -Htlnp "sport = :$port" 2> /dev/null \
        | grep -o 'users:(("[^"]*"' | head -n 1 | cut -d'"' -f2) || program=""
    fi
    echo "taken=$port $program"
  fi
done
if command -v ip > /dev/null 2>&1 && [ -n "$ROUTE_TO" ]; then
  route=$(ip -o route get "$ROUTE_TO" 2> /dev/null) || route=""
  echo "source=$(sed -n 's/.* src \([^ ]*\).*/\1/p' <<< "$route")"
fi
