# A streaming handler (_HANDLER=stream.handler): the bootstrap posts what it
# prints as it prints it, with Lambda-Runtime-Function-Response-Mode:
# streaming, as a function URL in RESPONSE_STREAM mode gets it. It answers
# in the HTTP integration format (a JSON prelude, eight NUL bytes, then the
# body): three lines, one every STREAM_EVERY seconds (default 1).
RESPONSE_MODE=streaming
RESPONSE_CONTENT_TYPE=application/vnd.awslambda.http-integration-response

function handler () {
  local every=${STREAM_EVERY:-1} i
  # no sleep binary in the image: wait on a pipe that never gets a line
  exec 3<> <(:)
  printf '{"statusCode":200,"headers":{"Content-Type":"text/plain"}}\0\0\0\0\0\0\0\0'
  for i in 1 2 3; do
    ((i == 1)) || read -r -t "$every" -u 3 || true
    printf 'line %d of 3\n' "$i"
  done
  exec 3>&-
}
