#!/usr/bin/env bash
# Interop test: PyPI's pdpyras (PagerDuty's Python client) sends Events API v2
# trigger, acknowledge and resolve to tocsin's /v2/enqueue. Checks through
# tocsin's REST API that the incident goes triggered -> acknowledged ->
# resolved, that a trigger without dedup_key gets one back (pdpyras returns
# it), and that an unknown routing key makes pdpyras raise.
#
# Usage: tests/interop/pdpyras.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   KEEP_TMP=1                   keep the temp dir (config, log, data)
# Needs: curl, python3 with pip (pdpyras is installed with pip if missing).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
START_SECONDS=$SECONDS

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"

# --- 1. pdpyras --------------------------------------------------------------
need_python_module pdpyras pdpyras
log "pdpyras $(python3 -W ignore -c 'import pdpyras; print(pdpyras.__version__)')"

# --- 2. tocsin -------------------------------------------------------------
tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-pd.XXXXXX")"
TOCSIN_PORT="$(free_port)"
TOCSIN="http://127.0.0.1:$TOCSIN_PORT"
KEY="interop-pdpyras-key-$RANDOM$RANDOM"

cat >"$TMP/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$TOCSIN_PORT"

[storage]
path = "$TMP/data"

[api]
token = "interop-api-token"

[log]
format = "human"
level = "info"

[[services]]
name = "db"
description = "Events from pdpyras"

[[integrations]]
name = "pdpyras"
kind = "pagerduty"
key = "$KEY"
service = "db"
EOF


start_tocsin "$TOCSIN"
pass "tocsin is ready"

# --- 3. pdpyras against tocsin ---------------------------------------------
cat >"$TMP/pdpyras_check.py" <<'EOF'
import json, sys, time, urllib.request, warnings

warnings.simplefilter("ignore")  # pdpyras announces its own deprecation
import pdpyras

base, key = sys.argv[1], sys.argv[2]


def check(cond, what):
    if not cond:
        print("FAIL: " + what)
        sys.exit(1)
    print("PASS: " + what)


def api(path):
    """GET path on tocsin's API with the interop bootstrap token."""
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer interop-api-token"})
    return urllib.request.urlopen(req, timeout=10)


def incidents():
    with api("/v1/incidents?limit=1000") as r:
        return json.load(r)["incidents"]


def incident(dedup_key):
    found = [i for i in incidents() if i["dedup_key"] == dedup_key]
    return found[0] if len(found) == 1 else None


s = pdpyras.EventsAPISession(key)
s.url = base

got = s.trigger(
    "Disk almost full on db-1",
    "db-1.example.internal",
    dedup_key="pdpyras-interop-1",
    severity="error",
    custom_details={"disk": "/var/lib/postgresql", "used_percent": 93.5},
)
check(got == "pdpyras-interop-1", f"trigger returned the given dedup_key ({got!r})")
inc = incident("pdpyras-interop-1")
check(inc is not None and inc["status"] == "triggered" and inc["severity"] == "sev2"
      and inc["title"] == "Disk almost full on db-1" and inc["integration"] == "pdpyras",
      f"incident triggered: {inc and (inc['key'], inc['status'], inc['severity'], inc['title'])}")

got = s.acknowledge("pdpyras-interop-1")
check(got == "pdpyras-interop-1", f"acknowledge returned the dedup_key ({got!r})")
inc = incident("pdpyras-interop-1")
check(inc is not None and inc["status"] == "acknowledged" and inc["acknowledged_at"],
      f"incident acknowledged: {inc and (inc['key'], inc['status'], inc['acknowledged_by'])}")

got = s.resolve("pdpyras-interop-1")
check(got == "pdpyras-interop-1", f"resolve returned the dedup_key ({got!r})")
inc = incident("pdpyras-interop-1")
check(inc is not None and inc["status"] == "resolved" and inc["resolved_at"]
      and inc["event_count"] == 3,
      f"incident resolved: {inc and (inc['key'], inc['status'], inc['event_count'])}")

with api("/v1/incidents/" + str(inc["id"])) as r:
    tl = [e.get("type") for e in json.load(r)["timeline"]]
check("acknowledged" in tl and tl[-1] == "resolved"
      and tl.index("acknowledged") < tl.index("resolved"),
      "timeline: " + ", ".join(map(str, tl)))

# A trigger without dedup_key: tocsin makes one up and pdpyras returns it.
gen = s.trigger("Replication lag on db-2", "db-2.example.internal", severity="warning")
check(isinstance(gen, str) and gen != "", f"trigger without dedup_key got one back ({gen!r})")
inc = incident(gen)
check(inc is not None and inc["status"] == "triggered" and inc["title"] == "Replication lag on db-2",
      f"that dedup_key names a triggered incident ({inc and inc['key']})")
got = s.resolve(gen)
inc = incident(gen)
check(got == gen and inc is not None and inc["status"] == "resolved",
      "resolving by the returned dedup_key resolves it")

# An unknown routing key: tocsin answers 400, and pdpyras raises.
bad = pdpyras.EventsAPISession("not-a-configured-key")
bad.url = base
try:
    bad.trigger("should be refused", "nowhere", dedup_key="refused")
except pdpyras.PDClientError as e:
    code = e.response.status_code if e.response is not None else None
    check(code == 400, f"unknown routing key: pdpyras raised {type(e).__name__} (HTTP {code})")
else:
    check(False, "unknown routing key was accepted")
check(incident("refused") is None and len(incidents()) == 2, "the refused event opened nothing")
EOF

python3 "$TMP/pdpyras_check.py" "$TOCSIN" "$KEY" || { FAILED_REPORTED=1; dump_logs; exit 1; }

pass "pdpyras interop ($((SECONDS - START_SECONDS))s)"
