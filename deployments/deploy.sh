#!/usr/bin/env bash
# A thin wrapper for people used to `./deploy.sh ENV ACTION`: each form maps
# to exactly one `cargo xtask` command, extra arguments passed through.
# All logic (locks, health gate, rollback, audit log) lives in the xtask;
# see docs/runbooks/ for what each task does.
#
#   ./deploy.sh staging up [ARGS...]        cargo xtask deploy-staging [ARGS...]
#   ./deploy.sh prod up [ARGS...]           cargo xtask deploy-prod [ARGS...]
#   ./deploy.sh ENV status [ARGS...]        cargo xtask status ENV [ARGS...]
#   ./deploy.sh ENV history [ARGS...]       cargo xtask history ENV [ARGS...]
#   ./deploy.sh ENV rollback [ARGS...]      cargo xtask rollback ENV [ARGS...]
#
# Run it from anywhere inside the repository (cargo finds the workspace).
set -euo pipefail

usage() {
	echo "usage: $0 staging|prod up|status|history|rollback [ARGS...]" >&2
	exit 2
}

[ "$#" -ge 2 ] || usage
env=$1
action=$2
shift 2

case "$env:$action" in
staging:up | prod:up) exec cargo xtask "deploy-$env" "$@" ;;
*:status | *:history | *:rollback) exec cargo xtask "$action" "$env" "$@" ;;
*) usage ;;
esac
