# Runs the SQL given on standard input as the server's root account, over its local socket
# (root has no network login). Prints the result rows, tab-separated.
# Parameters: HOST_DIR; HEADERS: --column-names or --skip-column-names.
PATH="$TOOLS_PATH:$PATH"
exec mariadb --no-defaults --socket="$HOST_DIR/mariadbd.sock" --user=root \
  --batch "$HEADERS"
