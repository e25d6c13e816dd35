#!/usr/bin/env bash
# A DeltaDatabase chat client with curl and jq. It appends the user's
# message to a chat session with a JSON Patch (so concurrent clients never
# lose each other's messages), then appends a reply only if the session is
# still the one the reply answers (If-Match), and prints the session.
#
#   DDB_URL=http://127.0.0.1:8080 DDB_TOKEN=<key> bash examples/curl/chat.sh "hello"
#
# DDB_DB (default chatdb) and DDB_SESSION (default session_001) pick the
# session.
set -euo pipefail
: "${DDB_URL:?set DDB_URL}" "${DDB_TOKEN:?set DDB_TOKEN}"
db=${DDB_DB:-chatdb}
session=${DDB_SESSION:-session_001}
text=${1:-hello}
key=$(jq -rn --arg s "$session" '$s | @uri')
entity="$DDB_URL/entity/$db?key=$key"
auth=(-H "Authorization: Bearer $DDB_TOKEN")
headers=$(mktemp)
trap 'rm -f "$headers"' EXIT

# etag prints the ETag of the last answer whose headers went to $headers.
etag() { grep -i '^etag:' "$headers" | cut -d' ' -f2 | tr -d '\r'; }

# 1. Create the session once: with If-None-Match: * a second client's
#    create is a 412 instead of wiping the messages.
doc=$(jq -n --arg s "$session" '{($s): {title: "Chat \($s)", messages: []}}')
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "${auth[@]}" -H 'If-None-Match: *' \
  -H 'Content-Type: application/json' -d "$doc" "$DDB_URL/entity/$db")
case $code in 200 | 412) ;; *) echo "chat: create session: HTTP $code" >&2; exit 1 ;; esac

# 2. Append the user's message: "/messages/-" is the end of the array, and
#    the server applies the patch atomically.
patch=$(jq -n --arg t "$text" '[{op: "add", path: "/messages/-", value: {role: "user", content: $t}}]')
curl -sf -D "$headers" -o /dev/null -X PATCH "${auth[@]}" \
  -H 'Content-Type: application/json-patch+json' -d "$patch" "$entity"
tag=$(etag)

# 3. Reply to the session as we saw it: If-Match turns a write by someone
#    else in between into a 412, which carries the new ETag.
reply=$(jq -n --arg t "You said: $text" '[{op: "add", path: "/messages/-", value: {role: "assistant", content: $t}}]')
for attempt in 1 2 3 4 5; do
  code=$(curl -s -D "$headers" -o /dev/null -w '%{http_code}' -X PATCH "${auth[@]}" -H "If-Match: $tag" \
    -H 'Content-Type: application/json-patch+json' -d "$reply" "$entity")
  [ "$code" = 200 ] && break
  [ "$code" = 412 ] && [ "$attempt" != 5 ] || { echo "chat: append reply: HTTP $code" >&2; exit 1; }
  tag=$(etag)
done

# A session made elsewhere (README's quick start) may have no title.
curl -sf "${auth[@]}" "$entity" | jq -r --arg s "$session" '(.title // $s), (.messages[] | "  \(.role): \(.content)")'
