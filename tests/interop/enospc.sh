#!/usr/bin/env bash
# Fault test: the disk under tocsin's store fills, then frees.
#
# tocsin runs with its data directory on a small tmpfs (32 MiB, mounted
# here; needs root). The script:
#  1. sends one alert (202, one incident);
#  2. fills the tmpfs to the last byte: alerts get 503 (never a 2xx for an
#     alert that is not on disk), /readyz says the store is not writable,
#     incidents can still be read;
#  3. keeps it full past `[storage] unhealthy_after` (3 s here): /healthz
#     fails, so a supervisor would restart tocsin;
#  4. frees the space: without a restart, the next alerts get 202 again
#     within a few seconds, and /readyz and /healthz are 200 again;
#  5. restarts tocsin: every alert that got a 2xx is there, none of those
#     that got a 503 is.
# It prints the time from freeing the space to the first accepted alert.
#
# Usage: tests/interop/enospc.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   KEEP_TMP=1                   keep the temp dir (config, logs)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
START_SECONDS=$SECONDS

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"
# The fault needs a filesystem of its own; without the right to mount one
# (not root, or a container without CAP_SYS_ADMIN) the script says so loudly
# and skips rather than fail every CI run on such a machine.
if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: mounting a tmpfs needs root; the disk-full test did not run"
    exit 0
fi

tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-enospc.XXXXXX")"
DISK="$TMP/disk"
mkdir -p "$DISK"
if ! mount -t tmpfs -o size=32m tmpfs "$DISK"; then
    echo "SKIP: cannot mount a tmpfs here (needs CAP_SYS_ADMIN); the disk-full test did not run"
    exit 0
fi
unmount_disk() { umount -l "$DISK" 2>/dev/null || true; }
trap 'unmount_disk; cleanup' EXIT

TOCSIN_PORT="$(free_port)"
TOCSIN="http://127.0.0.1:$TOCSIN_PORT"
KEY="interop-enospc-key-$RANDOM$RANDOM"

cat >"$TMP/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$TOCSIN_PORT"

[storage]
path = "$DISK/data"
unhealthy_after = "3s"

[api]
token = "interop-api-token"

[log]
format = "human"
level = "info"

[[services]]
name = "db"

[[integrations]]
name = "pd"
kind = "pagerduty"
key = "$KEY"
service = "db"
EOF

# POSTs a trigger with dedup key $1; prints the HTTP status.
alert() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 20 -X POST "$TOCSIN/v2/enqueue" \
        -H 'content-type: application/json' \
        -d "{\"routing_key\":\"$KEY\",\"event_action\":\"trigger\",\"dedup_key\":\"$1\",\"payload\":{\"summary\":\"disk test $1 $(head -c 900 /dev/zero | tr '\0' x)\",\"source\":\"enospc\",\"severity\":\"critical\"}}"
}
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$TOCSIN$1"; }
dedup_keys() {
    curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000" \
        | python3 -c 'import json,sys; print(" ".join(sorted(i["dedup_key"] for i in json.load(sys.stdin)["incidents"])))'
}

start_tocsin "$TOCSIN"
pass "tocsin is ready on a 32 MiB tmpfs"

ACCEPTED=()
REFUSED=()
[[ "$(alert before)" == 202 ]] || fail "the first alert was not accepted"
ACCEPTED+=(before)

# --- 2. the disk fills --------------------------------------------------------
dd if=/dev/zero of="$DISK/filler" bs=1M status=none 2>/dev/null || true
log "filled: $(df -h "$DISK" | tail -n 1)"
# sled may still hold a little buffered space: send until refused.
for i in $(seq 1 200); do
    code="$(alert "full-$i")"
    if [[ "$code" == 2* ]]; then
        ACCEPTED+=("full-$i")
    else
        [[ "$code" == 503 ]] || fail "an alert on a full disk got $code, not 503"
        REFUSED+=("full-$i")
        break
    fi
done
[[ ${#REFUSED[@]} -gt 0 ]] || fail "200 alerts were accepted on a full disk"
pass "on a full disk, alerts get 503 (after ${#ACCEPTED[@]} accepted in all)"
for i in 1 2 3; do
    code="$(alert "refused-$i")"
    [[ "$code" == 503 ]] || fail "alert refused-$i on a full disk got $code"
    REFUSED+=("refused-$i")
done
[[ "$(status_of /readyz)" == 503 ]] || fail "/readyz is not 503 on a full disk"
# Reads keep working while writes fail.
[[ "$(dedup_keys)" == *before* ]] || fail "the incident list is not readable on a full disk"
curl -s "$TOCSIN/readyz" | grep -q "No space left" || fail "/readyz does not say the disk is full"
pass "/readyz: $(curl -s "$TOCSIN/readyz" | head -c 200)"

# --- 3. full for longer than unhealthy_after -----------------------------------
sleep 4
[[ "$(alert refused-late)" == 503 ]] || fail "an alert after 4 s full was not refused"
REFUSED+=(refused-late)
[[ "$(status_of /healthz)" == 503 ]] || fail "/healthz is not 503 after 4 s of failed writes"
pass "/healthz fails after unhealthy_after: $(curl -s "$TOCSIN/healthz" | head -c 200)"

# --- 4. space comes back --------------------------------------------------------
rm -f "$DISK/filler"
freed_at=$(date +%s.%N)
recovered=""
for i in $(seq 1 100); do
    code="$(alert "after-$i")"
    if [[ "$code" == 202 ]]; then
        ACCEPTED+=("after-$i")
        recovered=$(python3 -c "print(round($(date +%s.%N) - $freed_at, 2))")
        break
    fi
    REFUSED+=("after-$i")
    sleep 0.2
done
[[ -n "$recovered" ]] || fail "alerts were still refused 20 s after the disk was freed"
pass "alerts accepted again ${recovered} s after the disk was freed, without a restart"
for i in 1 2 3; do
    [[ "$(alert "more-$i")" == 202 ]] || fail "alert more-$i after recovery was refused"
    ACCEPTED+=("more-$i")
done
[[ "$(status_of /readyz)" == 200 ]] || fail "/readyz is not 200 after recovery: $(curl -s "$TOCSIN/readyz")"
[[ "$(status_of /healthz)" == 200 ]] || fail "/healthz is not 200 after recovery"
pass "/readyz and /healthz are 200 again"

# --- 5. a restart keeps every accepted alert and none of the refused ones -------
stop "$TOCSIN_PID"
start_tocsin "$TOCSIN"
have=" $(dedup_keys) "
for k in "${ACCEPTED[@]}"; do
    [[ "$have" == *" $k "* ]] || fail "alert $k got a 2xx but is not in the store after a restart"
done
for k in "${REFUSED[@]}"; do
    [[ "$have" != *" $k "* ]] || fail "alert $k got a 503 but was stored (half-written)"
done
pass "after a restart: all ${#ACCEPTED[@]} accepted alerts are there, none of the ${#REFUSED[@]} refused ones"
log "done in $((SECONDS - START_SECONDS))s"
