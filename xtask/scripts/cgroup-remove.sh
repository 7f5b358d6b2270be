# Removes a host's cgroup folders, and their parents once empty (the deployment's, then the
# project's). Whatever still runs in them is the deployment's own (a load test an interrupted
# bench left behind): it is stopped first, since a group with processes cannot be removed.
# Parameters: CGROUP_DIRS (the folders, one per line), LEVELS (how many parent folders are ours).
while read -r dir; do
  [ -n "$dir" ] && [ -d "$dir" ] || continue
  deadline=$((SECONDS + 10))
  # A cgroup file's size is always 0: its content says whether processes are left.
  while procs=$(cat "$dir/cgroup.procs") && [ -n "$procs" ]; do
    for pid in $procs; do
      kill -KILL "$pid" 2> /dev/null || true
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "processes $(echo $procs) are still in $dir after SIGKILL" >&2
      exit 1
    fi
    sleep 0.1
  done
  rmdir "$dir"
  parent=$dir
  for _ in $(seq "$LEVELS"); do
    parent=$(dirname "$parent")
    # Another host's group may still be there: then the parent stays, for its last host.
    rmdir "$parent" 2> /dev/null || break
  done
done <<< "$CGROUP_DIRS"
