# The Developer Guide's sample handler: it echoes the event it gets.
function handler () {
  EVENT_DATA=$1
  RESPONSE="$EVENT_DATA"
  echo "$RESPONSE"
}
