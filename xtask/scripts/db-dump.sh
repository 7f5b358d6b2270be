# Prints a consistent copy of everything the server holds (accounts included, its own
# replication position excepted) as SQL, with the GTID position it is at: what a diverged
# server is rebuilt from.
# Parameters: HOST_DIR.
PATH="$TOOLS_PATH:$PATH"
exec mariadb-dump --no-defaults --socket="$HOST_DIR/mariadbd.sock" --user="$(id -un)" \
  --all-databases --single-transaction --gtid --master-data=1 \
  --routines --events --triggers --ignore-table=mysql.gtid_slave_pos
