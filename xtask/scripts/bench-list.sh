# Lists the finished outputs of a bench run, relative to its folder, one per line.
# Parameters: RUN (the run's folder, in the bench client's folder).
if [ -d "$RUN" ]; then
  find "$RUN" -type f ! -name '*.tmp' ! -name '*.err' -printf '%P\n'
fi
