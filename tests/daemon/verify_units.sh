#!/bin/sh
# systemd-analyze verify on the configured units (system and per-user), with ExecStart
# pointed at the freshly built binary (verify insists that the executable exists).
# Exit 77 (skipped) where systemd-analyze is not installed.
set -eu
build=${1:?usage: verify_units.sh BUILD_DIR}
command -v systemd-analyze >/dev/null 2>&1 || { echo "skip: no systemd-analyze"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/user"
bin="$build/daemon/capsearchd"
[ -x "$bin" ] || { echo "no $bin" >&2; exit 1; }
for unit in capsearchd.service user/capsearchd.service; do
    sed -E "s#^ExecStart=[^ ]*capsearchd#ExecStart=$bin#" "$build/systemd/$unit" > "$work/$unit"
    grep -q "^ExecStart=$bin" "$work/$unit" || { echo "$unit: no ExecStart rewritten" >&2; exit 1; }
done
status=0
for unit in capsearchd.service user/capsearchd.service; do
    # systemd-analyze prints problems but may still exit 0: any output is a failure
    out=$(cd "$work" && systemd-analyze verify --man=no "$unit" 2>&1) || status=1
    if [ -n "$out" ]; then
        printf '%s:\n%s\n' "$unit" "$out" >&2
        status=1
    fi
done
[ "$status" = 0 ] && echo "units verify clean"
exit "$status"
