# Sends POST PATH with a JSON body to a role service, asked from the service's own host, with a
# bearer token, and prints the answer's body. The token and the body come on standard input (the
# first line, then the rest), never on a command line. Fails unless the answer is 200, with the
# answer's body (the service's error) as the message.
# Parameters: ADDRESS, PORT, URL_PATH.
IFS= read -r token
body=$(cat)
LC_ALL=C
exec 3<> "/dev/tcp/$ADDRESS/$PORT"
printf 'POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %s\r\n\r\n%s' \
  "$URL_PATH" "$ADDRESS" "$token" "${#body}" "$body" >&3
read -r _ status _ <&3
while IFS= read -r line <&3 && [ "${line%$'\r'}" != "" ]; do :; done
if [ "$status" != 200 ]; then
  echo "POST $URL_PATH on $ADDRESS:$PORT answered $status: $(cat <&3)" >&2
  exit 1
fi
cat <&3
