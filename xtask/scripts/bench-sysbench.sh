# Runs one sysbench command against several servers at the same time, one sysbench each. A
# report is placed at its output path only when its sysbench succeeded.
# Parameters: COMMAND (prepare, run or cleanup); ARGS (the workload and its options); TARGETS:
# lines of "<connection config> <output path>", the output "-" discarding the report.
PATH="$TOOLS_PATH:$PATH"
# The bench client's own cgroup, if it has one: its quota is the client machine's.
enter_cgroup
pids=()
outs=()
reports=()
while read -r config out; do
  [ -n "$config" ] || continue
  if [ "$out" = - ]; then
    report=$(mktemp)
  else
    mkdir -p "$(dirname "$out")"
    report="$out.tmp"
  fi
  # ARGS is several options: split on purpose.
  # shellcheck disable=SC2086
  sysbench --config-file="$config" $ARGS "$COMMAND" > "$report" 2> "$report.err" &
  pids+=("$!")
  outs+=("$out")
  reports+=("$report")
done <<< "$TARGETS"

failed=0
for i in "${!pids[@]}"; do
  report="${reports[$i]}"
  if wait "${pids[$i]}"; then
    if [ "${outs[$i]}" = - ]; then
      rm -f "$report"
    else
      mv -f "$report" "${outs[$i]}"
    fi
  else
    echo "sysbench $COMMAND failed; its last lines:" >&2
    cat "$report" "$report.err" | grep -v '^[[:space:]]*$' | tail -n 8 >&2
    rm -f "$report"
    failed=1
  fi
  rm -f "$report.err"
done
exit "$failed"
