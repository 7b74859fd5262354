#!/usr/bin/env bash
# Checks an environment's audit sink (the mirror copy of its audit log):
#   1. the sink's directory is reachable,
#   2. it is writable (a probe file is created there and removed),
#   3. its head (SHA-256 of its last line, computed here with sha256sum)
#      equals the local head that `cargo xtask audit verify` reports, and
#      the xtask's byte-for-byte comparison of the two copies passes.
#
# usage: scripts/check-audit-sink.sh ENV [xtask flags, e.g. --config PATH --state-dir DIR]
# env:   XTASK  the command instead of `cargo xtask` (e.g. target/release/xtask)
# exit:  0 ok; 1 usage, no sink configured, unreachable or not writable;
#        6 heads differ or a chain does not verify (the xtask's error says where)
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 ENV [xtask flags...]" >&2
  exit 1
fi
env_name=$1
shift
read -r -a xtask <<<"${XTASK:-cargo xtask}"

fail() {
  echo "check-audit-sink: $env_name: $2" >&2
  exit "$1"
}

status=0
out=$("${xtask[@]}" "$@" audit verify "$env_name") || status=$?
printf '%s\n' "$out"

# `audit verify` prints `ENV: sink PATH: SUMMARY` for a configured sink and
# `ENV: N records, head HEX` for a local chain that verifies.
sink_line=$(grep -m 1 "^$env_name: sink " <<<"$out" || true)
if [[ -z "$sink_line" ]]; then
  if [[ $status -ne 0 ]]; then
    fail "$status" "audit verify failed (exit $status) before naming the sink"
  fi
  fail 1 "no audit_sink is configured for this environment"
fi
sink=${sink_line#"$env_name: sink "}
sink=${sink%: *}
sink_dir=$(dirname -- "$sink")

[[ -d "$sink_dir" ]] || fail 1 "sink directory $sink_dir is unreachable (not mounted?)"
probe=$(mktemp "$sink_dir/.check-audit-sink.XXXXXX" 2>/dev/null) ||
  fail 1 "sink directory $sink_dir is not writable"
rm -f -- "$probe"

local_head=$(sed -n "s/^$env_name: [0-9]* records, head \([0-9a-f]\{64\}\)\$/\1/p" <<<"$out")
[[ -n "$local_head" ]] || fail "$((status == 0 ? 6 : status))" "the local chain does not verify"

genesis=0000000000000000000000000000000000000000000000000000000000000000
sink_head=$genesis
if [[ -s "$sink" ]]; then
  # The head is the SHA-256 of the last line without its newline.
  last=$(tail -n 1 -- "$sink")
  sink_head=$(printf '%s' "$last" | sha256sum | cut -d ' ' -f 1)
fi
if [[ "$sink_head" != "$local_head" ]]; then
  fail 6 "sink head $sink_head is not the local head $local_head"
fi
if [[ $status -ne 0 ]]; then
  fail "$status" "heads agree but audit verify failed (exit $status)"
fi
echo "check-audit-sink: $env_name: ok: sink $sink is reachable and writable, head $sink_head equals the local head"
