# A handler for make e2e's logging cases (_HANDLER=env.handler), in the
# image with the extension only: it answers with the logging variables the
# bootstrap was given, null for one it was not given.

function handler () {
  local v out= sep=
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
