# Runs the SQL given on standard input as the server's root account, over its local socket
# (root has no network login). Prints the result rows, tab-separated.
# The server lets the OS user that initialized it (root, or the user running xtask) in over the
# socket under its own name.
# Parameters: HOST_DIR; HEADERS: --column-names or --skip-column-names.
PATH="$TOOLS_PATH:$PATH"
exec mariadb --no-defaults --socket="$HOST_DIR/mariadbd.sock" --user="$(id -un)" \
  --batch "$HEADERS"
