# Prints the body of GET PATH on a role service, asked from the service's own host (the other
# tiers' ports are closed to everyone else). Fails unless the answer is 200.
# Parameters: ADDRESS, PORT, URL_PATH.
exec 3<> "/dev/tcp/$ADDRESS/$PORT"
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$URL_PATH" "$ADDRESS" >&3
read -r _ status _ <&3
# The headers end at the first empty line; the body is the rest.
while IFS= read -r line <&3 && [ "${line%$'\r'}" != "" ]; do :; done
if [ "$status" != 200 ]; then
  echo "GET $URL_PATH on $ADDRESS:$PORT answered $status" >&2
  exit 1
fi
cat <&3
