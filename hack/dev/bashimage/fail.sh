# A handler that always fails (_HANDLER=fail.handler), for make e2e's
# retry and on-failure destination case: it records the attempt as
# record.sh does (RECORD_URL), then prints an error object and returns 1,
# which the bootstrap posts to the Runtime API's /error.
# shellcheck source=record.sh
source "$LAMBDA_TASK_ROOT/record.sh"
eval "record_$(declare -f handler)"

function handler () {
  record_handler "$1" >/dev/null || true
  printf '{"errorMessage":"fail.sh fails every time","errorType":"AlwaysFails"}\n'
  return 1
}
