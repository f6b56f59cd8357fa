# A handler for make e2e's logging cases (_HANDLER=env.handler), in the
# image with the extension only: it answers with the logging variables the
# bootstrap was given, null for one it was not given, and logs to stderr a
# JSON line at each level from TRACE to ERROR, {"level":"DEBUG","message":
# "env.sh at DEBUG"}, and a plain line, for the application log level to
# filter.

function handler () {
  local v l out= sep=
  for l in TRACE DEBUG INFO WARN ERROR; do
    printf '{"level":"%s","message":"env.sh at %s"}\n' "$l" "$l" >&2
  done
  echo "env.sh plain line" >&2
  for v in AWS_LAMBDA_LOG_FORMAT AWS_LAMBDA_LOG_LEVEL LAMBDAPOD_SYSTEM_LOG_LEVEL; do
    if [[ -v $v ]]; then
      out+="$sep\"$v\":\"${!v}\""
    else
      out+="$sep\"$v\":null"
    fi
    sep=,
  done
  printf '{%s}\n' "$out"
}
