# Prints the CPU seconds every process of a host's cgroup has used so far (its accounting
# counts the processes that have exited too), then the CPU quota in force in CPUs ("max" when
# there is none): what the group holds now, whatever was recorded.
# Parameters: CGROUP_DIRS (the group's folders, one per line).
used=""
quota=""
while read -r dir; do
  if [ -f "$dir/cpuacct.usage" ]; then
    used=$(awk '{ printf "%.6f", $1 / 1e9 }' "$dir/cpuacct.usage")
  fi
  # v2's cpu.stat; v1's cpu controller has a cpu.stat too, without usage.
  if grep -qs '^usage_usec ' "$dir/cpu.stat"; then
    used=$(awk '$1 == "usage_usec" { printf "%.6f", $2 / 1e6 }' "$dir/cpu.stat")
  fi
  if [ -f "$dir/cpu.max" ]; then
    quota=$(awk '{ if ($1 == "max") print "max"; else printf "%.3f", $1 / $2 }' "$dir/cpu.max")
  fi
  if [ -f "$dir/cpu.cfs_quota_us" ]; then
    quota=$(awk -v period="$(cat "$dir/cpu.cfs_period_us")" \
      '{ if ($1 < 0) print "max"; else printf "%.3f", $1 / period }' "$dir/cpu.cfs_quota_us")
  fi
done <<< "$CGROUP_DIRS"
if [ -z "$used" ] || [ -z "$quota" ]; then
  echo "no CPU accounting or quota in the groups $CGROUP_DIRS" >&2
  exit 1
fi
echo "$used $quota"
