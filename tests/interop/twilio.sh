#!/usr/bin/env bash
# Interop test: requests signed by PyPI's twilio package (Twilio's own
# helper library, RequestValidator.compute_signature) reach a live tocsin
# the way Twilio's webhooks do. An SMS reply "1" signed over [server]
# public_url acknowledges the page; a status callback whose URL carries a
# query verifies; a tampered body, a tampered query and a missing signature
# get 403 and change nothing. public_url has a path prefix, as behind a
# reverse proxy that strips it.
#
# Usage: tests/interop/twilio.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   TWILIO_VENV=/path            the venv for the twilio package
#                                [default: /var/tmp/tocsin-interop-twilio-venv]
#   KEEP_TMP=1                   keep the temp dir (config, log, data)
# Needs: curl, python3 with venv (twilio is installed with pip if missing).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
START_SECONDS=$SECONDS

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"

# --- 1. the twilio package, in its own venv ---------------------------------
VENV="${TWILIO_VENV:-/var/tmp/tocsin-interop-twilio-venv}"
if ! "$VENV/bin/python" -c 'import twilio.request_validator' 2>/dev/null; then
    log "installing twilio from PyPI into $VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv failed"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check twilio \
        || fail "pip install twilio failed"
fi
log "twilio $("$VENV/bin/python" -c 'import twilio; print(twilio.__version__)')"

# --- 2. tocsin -------------------------------------------------------------
tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-twilio.XXXXXX")"
TOCSIN_PORT="$(free_port)"
TOCSIN="http://127.0.0.1:$TOCSIN_PORT"
KEY="interop-twilio-key-$RANDOM$RANDOM"
TOKEN="interop-twilio-auth-token-$RANDOM$RANDOM"
PUBLIC="https://tocsin.interop.example/base"

cat >"$TMP/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$TOCSIN_PORT"
public_url = "$PUBLIC"

[storage]
path = "$TMP/data"

[api]
token = "interop-api-token"

[log]
format = "human"
level = "info"

[twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "\${TWILIO_AUTH_TOKEN}"
from = "+15550000000"
# Nothing is sent out in this test: alice is paged by log.
api_url = "http://127.0.0.1:9"

[[users]]
name = "alice"
phone = "+15551230001"
contact_methods = [{ kind = "log" }]

[[escalation_policies]]
name = "db"
[[escalation_policies.steps]]
targets = [{ user = "alice" }]
delay = "10m"

[[services]]
name = "db"
escalation_policy = "db"

[[integrations]]
name = "events"
kind = "pagerduty"
key = "$KEY"
service = "db"
EOF

export TWILIO_AUTH_TOKEN="$TOKEN"
start_tocsin "$TOCSIN"
pass "tocsin is ready"

# --- 3. signed requests ------------------------------------------------------
cat >"$TMP/twilio_check.py" <<'EOF'
import json, sys, time, urllib.error, urllib.parse, urllib.request
from twilio.request_validator import RequestValidator

base, public, token, key = sys.argv[1:5]
validator = RequestValidator(token)


def check(cond, what):
    if not cond:
        print("FAIL: " + what)
        sys.exit(1)
    print("PASS: " + what)


def post(path, params, signature):
    req = urllib.request.Request(base + path, data=urllib.parse.urlencode(params).encode(),
                                 method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if signature is not None:
        req.add_header("X-Twilio-Signature", signature)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def api(path, body=None):
    req = urllib.request.Request(base + path, data=body and json.dumps(body).encode(),
                                 method="POST" if body else "GET")
    req.add_header("Content-Type", "application/json")
    # The REST API needs a token (the config's bootstrap token).
    req.add_header("Authorization", "Bearer interop-api-token")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


api("/v2/enqueue", {"routing_key": key, "event_action": "trigger", "dedup_key": "twilio-1",
                    "payload": {"summary": "Disk full on db-1", "source": "db-1", "severity": "critical"}})
for _ in range(100):
    inc = [i for i in api("/v1/incidents")["incidents"] if i["dedup_key"] == "twilio-1"][0]
    notes = api(f"/v1/incidents/{inc['id']}/notifications")["notifications"]
    if any(n["state"]["state"] == "delivered" for n in notes):
        break
    time.sleep(0.1)
check(any(n["state"]["state"] == "delivered" for n in notes), "alice was paged")

reply = {"MessageSid": "SM" + "1" * 32, "AccountSid": "AC0123456789abcdef0123456789abcdef",
         "From": "+15551230001", "To": "+15550000000", "Body": "1", "NumMedia": "0"}
url = public + "/twilio/sms"
good = validator.compute_signature(url, reply)

status, body = post("/twilio/sms", reply, None)
check(status == 403, f"unsigned reply refused ({status})")
tampered = dict(reply, Body="2")
status, body = post("/twilio/sms", tampered, good)
check(status == 403, f"tampered body refused ({status})")
status, body = post("/twilio/sms", reply, validator.compute_signature(public + "/other", reply))
check(status == 403, f"signature over another URL refused ({status})")
check(api(f"/v1/incidents/{inc['id']}")["incident"]["status"] == "triggered",
      "the refused requests changed nothing")

status, body = post("/twilio/sms", reply, good)
check(status == 200 and "<Message>Acknowledged INC-" in body, f"signed reply accepted: {status} {body}")
shown = api(f"/v1/incidents/{inc['id']}")
check(shown["incident"]["status"] == "acknowledged", "incident acknowledged")
ack = [e for e in shown["timeline"] if e["type"] == "acknowledged"][0]
check(ack["actor"]["name"] == {"user": "alice", "principal": "sms:+15551230001"},
      f"acknowledged by alice over SMS: {ack['actor']}")

# A URL with a query (how tocsin's status callbacks are addressed).
status_params = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered", "To": "+15551230001"}
path = "/twilio/status?key=" + urllib.parse.quote("INC-1/g0/r0/s0/user:alice/m0", safe="")
sig = validator.compute_signature(public + path, status_params)
check(validator.validate(public + path, status_params, sig), "the library validates its own signature")
status, _ = post(path, status_params, sig)
check(status == 200, f"status callback with a query accepted ({status})")
status, _ = post(path.replace("m0", "m1"), status_params, sig)
check(status == 403, f"tampered query refused ({status})")
EOF

"$VENV/bin/python" "$TMP/twilio_check.py" "$TOCSIN" "$PUBLIC" "$TOKEN" "$KEY" \
    || { FAILED_REPORTED=1; dump_logs; exit 1; }

pass "twilio interop ($((SECONDS - START_SECONDS))s)"
