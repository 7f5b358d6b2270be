# Copies the folders of the host's folder (not the files beside them) to a fresh folder in the
# login user's home, owned by that user, so scp can fetch them; prints that folder's path.
# Parameters: none.
user="${SUDO_USER:-$(id -un)}"
home=$(getent passwd "$user" | cut -d: -f6)
staged="$home/xtask-fetch"
rm -rf "$staged"
mkdir -p "$staged"
for folder in */; do
  [ -d "$folder" ] && cp -r "$folder" "$staged/"
done
chown -R "$user" "$staged"
echo "$staged"
