# Prints the CPU seconds every process of a host's cgroup has used so far (its accounting
# counts the processes that have exited too).
# Parameters: CGROUP_DIRS (the group's folders, one per line).
while read -r dir; do
  if [ -f "$dir/cpuacct.usage" ]; then
    awk '{ printf "%.6f\n", $1 / 1e9 }' "$dir/cpuacct.usage"
    exit 0
  fi
  # v2's cpu.stat; v1's cpu controller has a cpu.stat too, without usage.
  if grep -qs '^usage_usec ' "$dir/cpu.stat"; then
    awk '$1 == "usage_usec" { printf "%.6f\n", $2 / 1e6 }' "$dir/cpu.stat"
    exit 0
  fi
done <<< "$CGROUP_DIRS"
echo "no CPU accounting in the groups $CGROUP_DIRS" >&2
exit 1
