# A handler for make e2e's Event cases (_HANDLER=record.handler): it posts
# the request id the Runtime API gave (Lambda-Runtime-Aws-Request-Id) and
# the event, as it got it, to RECORD_URL (the test's recorder), then waits
# RECORD_DELAY seconds (default none) and answers {"recorded":"<id>"}.
# A post that fails is an error of the invocation (it is then retried).

function handler () {
  local delay=${RECORD_DELAY:-0}
  curl -sS -f -o /dev/null --max-time 10 -X POST \
    -H "Content-Type: application/octet-stream" \
    -H "X-Request-Id: $REQUEST_ID" \
    -H "X-Function: ${AWS_LAMBDA_FUNCTION_NAME:-}" \
    --data-binary "$1" "$RECORD_URL" || {
    printf '{"errorMessage":"could not record %s at %s","errorType":"RecordFailed"}\n' "$REQUEST_ID" "$RECORD_URL"
    return 1
  }
  if [[ $delay != 0 ]]; then
    # no sleep binary in the image: wait on a pipe that never gets a line
    exec 3<> <(:)
    read -r -t "$delay" -u 3 || true
    exec 3>&-
  fi
  printf '{"recorded":"%s"}\n' "$REQUEST_ID"
}
