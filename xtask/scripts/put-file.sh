# Writes standard input to NAME (relative to the host's folder), owner-only, with MODE (600 or
# 700). Written beside and renamed over: a reader or a running binary never sees half a file.
# Parameters: NAME, MODE.
umask 077
dir=$(dirname "$NAME")
staged="$dir/.$(basename "$NAME").new"
mkdir -p "$dir"
cat > "$staged"
chmod "$MODE" "$staged"
mv -f "$staged" "$NAME"
