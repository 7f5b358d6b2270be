# Makes (or adjusts) a host's cgroup: a CPU quota and a memory limit over every process placed
# in it. cgroup v2 where the unified hierarchy has the cpu and memory controllers, v1 where
# they are mounted as their own hierarchies. Safe to run again: an existing group is adopted
# and its limits set anew. Prints the hierarchy ("v1" or "v2") and then the group's folders,
# one per line; or, where no group can be made (no hierarchy, not writable), "off" and one
# line saying why.
# Parameters: ROOT (where cgroups are mounted), GROUP (the group's path under each hierarchy),
# CPU_PERIOD_US and CPU_QUOTA_US (the CPU time the group may use per period; empty: no CPU
# limit), MEMORY_BYTES (empty: no limit).
period_us=${CPU_PERIOD_US:-100000}

fail() {
  printf 'off\n%s\n' "$1"
  exit 0
}

if [ -f "$ROOT/cgroup.controllers" ]; then
  for controller in cpu memory; do
    grep -qw "$controller" "$ROOT/cgroup.controllers" ||
      fail "the cgroup v2 hierarchy at $ROOT has no $controller controller"
  done
  # Each level enables the controllers for the one below: only the leaf holds processes.
  dir=$ROOT
  IFS=/ read -r -a parts <<< "$GROUP"
  for part in "${parts[@]}"; do
    echo "+cpu +memory" 2> /dev/null > "$dir/cgroup.subtree_control" ||
      fail "cannot enable the cpu and memory controllers in $dir (not writable by $(id -un))"
    dir="$dir/$part"
    mkdir -p "$dir" 2> /dev/null || fail "cannot create $dir (not writable by $(id -un))"
  done
  echo "${CPU_QUOTA_US:-max} $period_us" > "$dir/cpu.max"
  echo "${MEMORY_BYTES:-max}" > "$dir/memory.max"
  echo v2
  echo "$dir"
  exit 0
fi

for controller in cpu cpuacct memory; do
  [ -d "$ROOT/$controller" ] ||
    fail "no cgroup hierarchy at $ROOT: neither v2 (cgroup.controllers) nor v1's $controller controller"
done
dirs=()
for controller in cpu cpuacct memory; do
  dir="$ROOT/$controller/$GROUP"
  mkdir -p "$dir" 2> /dev/null || fail "cannot create $dir ($(mkdir -p "$dir" 2>&1 | sed 's/.*: //'))"
  # cpu and cpuacct are often one hierarchy mounted twice: list each folder once.
  real=$(realpath "$dir")
  case " ${dirs[*]} " in
    *" $real "*) ;;
    *) dirs+=("$real") ;;
  esac
done
echo "$period_us" > "$ROOT/cpu/$GROUP/cpu.cfs_period_us"
echo "${CPU_QUOTA_US:--1}" > "$ROOT/cpu/$GROUP/cpu.cfs_quota_us"
echo "${MEMORY_BYTES:--1}" > "$ROOT/memory/$GROUP/memory.limit_in_bytes"
echo v1
printf '%s\n' "${dirs[@]}"
