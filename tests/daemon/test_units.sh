#!/bin/sh
# systemd-analyze verify on the configured units (system and per-user), with ExecStart
# pointed at the freshly built binary (verify insists that the executable exists).
# Exit 77 (skipped) where systemd-analyze is not installed.
set -eu
build=${1:?usage: test_units.sh BUILD_DIR}
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
# capsearch serve's units: the service runs the capsearch binary; the socket comes along
cli="$build/cli/capsearch"
[ -x "$cli" ] || { echo "no $cli" >&2; exit 1; }
for unit in capsearch-web.service user/capsearch-web.service; do
    sed -E "s#^ExecStart=[^ ]*capsearch #ExecStart=$cli #" "$build/systemd/$unit" > "$work/$unit"
    grep -q "^ExecStart=$cli serve" "$work/$unit" || { echo "$unit: no ExecStart rewritten" >&2; exit 1; }
done
cp "$build/systemd/capsearch-web.socket" "$work/"
cp "$build/systemd/user/capsearch-web.socket" "$work/user/"
status=0
for unit in capsearchd.service user/capsearchd.service "capsearch-web.socket capsearch-web.service" \
            "user/capsearch-web.socket user/capsearch-web.service"; do
    # systemd-analyze prints problems but may still exit 0: any output is a failure
    # shellcheck disable=SC2086 (a socket and its service are verified together)
    out=$(cd "$work" && systemd-analyze verify --man=no $unit 2>&1) || status=1
    if [ -n "$out" ]; then
        printf '%s:\n%s\n' "$unit" "$out" >&2
        status=1
    fi
done
[ "$status" = 0 ] && echo "units verify clean"
exit "$status"
