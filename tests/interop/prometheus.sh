#!/usr/bin/env bash
# Interop test: a real Prometheus sends its alerts straight to tocsin, as if
# tocsin were its Alertmanager (POST /api/v2/alerts, Authorization: Bearer KEY
# of an alertmanager-kind integration). An alerting rule fires at once
# (`vector(1)`): one incident opens, titled with the alertname. The rule file
# is then rewritten to `vector(1) == 2` and Prometheus reloaded with SIGHUP:
# Prometheus sends the alert with endsAt = resolve time, and the incident
# resolves (or resolves a moment earlier, when the firing alert's endsAt
# passes without a re-send, as Alertmanager would).
#
# Usage: tests/interop/prometheus.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   KEEP_TMP=1                   keep the temp dir (configs, logs, data)
#   POLL_TIMEOUT=30              seconds to wait for each expected state
# Needs: curl, python3, prometheus (installed with apt-get if missing and we
# are root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
POLL_TIMEOUT="${POLL_TIMEOUT:-30}"
START_SECONDS=$SECONDS
ALERT=InteropPrometheusRule

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"

# --- 1. Prometheus ---------------------------------------------------------
need_command prometheus prometheus
log "$(prometheus --version 2>&1 | head -n 1)"

# --- 2. tocsin -------------------------------------------------------------
tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-prom.XXXXXX")"

# Two listeners: Prometheus pushes alerts to the public one and scrapes
# /metrics on the API one, with a token (no network may scrape without).
read -r TOCSIN_PORT PROM_PORT PUBLIC_PORT < <(free_ports 3)
TOCSIN="http://127.0.0.1:$TOCSIN_PORT"
PROM="http://127.0.0.1:$PROM_PORT"
KEY="interop-prom-key-$RANDOM$RANDOM"

cat >"$TMP/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$TOCSIN_PORT"
public_listen = "127.0.0.1:$PUBLIC_PORT"
metrics_networks = []

[storage]
path = "$TMP/data"

[api]
token = "interop-api-token"

[log]
format = "human"
level = "info"

[[services]]
name = "metrics"
description = "Alerts pushed by Prometheus itself"

[[integrations]]
name = "prometheus"
kind = "alertmanager"
key = "$KEY"
service = "metrics"
EOF


start_tocsin "$TOCSIN"

pass "tocsin is ready: $(curl -fsS "$TOCSIN/readyz")"

# --- 3. Prometheus config and start ---------------------------------------
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 15s
  evaluation_interval: 1s
rule_files:
  - rules.yml
alerting:
  alertmanagers:
    - api_version: v2
      scheme: http
      authorization:
        credentials: $KEY
      static_configs:
        - targets: ['127.0.0.1:$PUBLIC_PORT']
scrape_configs:
  - job_name: tocsin
    scrape_interval: 1s
    authorization:
      credentials: interop-api-token
    static_configs:
      - targets: ['127.0.0.1:$TOCSIN_PORT']
EOF

write_rules() { # expr
    # Written to a temp file and renamed, so a reload never reads half a file.
    cat >"$TMP/rules.yml.new" <<EOF
groups:
  - name: tocsin-interop
    interval: 1s
    rules:
      - alert: $ALERT
        expr: $1
        for: 0s
        labels:
          severity: critical
          service: api
        annotations:
          summary: "Interop test alert from Prometheus"
EOF
    mv "$TMP/rules.yml.new" "$TMP/rules.yml"
}
write_rules 'vector(1)'

if command -v promtool >/dev/null; then
    promtool check config "$TMP/prometheus.yml" >"$TMP/promtool.log" 2>&1 \
        || { cat "$TMP/promtool.log"; fail "promtool check config refused the Prometheus config"; }
fi

log "starting prometheus on $PROM"
PHASE_START=$SECONDS
prometheus \
    --config.file="$TMP/prometheus.yml" \
    --storage.tsdb.path="$TMP/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.external-url="$PROM" \
    --rules.alert.resend-delay=1s \
    --log.level=debug \
    >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS+=("$PROM_PID")
wait_http prometheus "$PROM/-/ready" "$PROM_PID"
WATCH="tocsin:$TOCSIN_PID prometheus:$PROM_PID"
pass "prometheus is ready"

# --- 4. Fire, check, resolve, check ---------------------------------------
# Prints a one-line summary and exits 0 when there is exactly one incident,
# from the prometheus integration, titled $ALERT, with status $1.
check_incidents() { # want
    local json
    json="$(curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000")" || { echo "GET /v1/incidents failed"; return 1; }
    python3 - "$1" "$ALERT" "$json" <<'EOF'
import json, sys
want, alert, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
incs = body["incidents"]
print("; ".join(
    f'{i["key"]} {i["integration"]}/{i["service"]} "{i["title"]}" {i["status"]} {i["severity"]} alerts={len(i["alerts"])}'
    for i in incs) or "no incidents")
ok = (len(incs) == 1 and incs[0]["title"] == alert and incs[0]["status"] == want
      and incs[0]["integration"] == "prometheus" and incs[0]["service"] == "metrics"
      and incs[0]["severity"] == "sev1" and len(incs[0]["alerts"]) == 1)
sys.exit(0 if ok else 1)
EOF
}

wait_incidents() { # want
    if poll check_incidents "$1"; then
        pass "incident $1 after $((SECONDS - PHASE_START))s: $POLL_OUT"
        return 0
    fi
    echo "incidents now: $POLL_OUT"
    curl -sS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?limit=1000" | python3 -m json.tool | head -n 120 || true
    fail "expected exactly one $1 incident titled $ALERT within ${POLL_TIMEOUT}s"
}

log "waiting for prometheus to fire $ALERT at tocsin"
wait_incidents triggered

log "rule now 'vector(1) == 2'; reloading prometheus (SIGHUP)"
PHASE_START=$SECONDS
write_rules 'vector(1) == 2'
kill -HUP "$PROM_PID"
wait_incidents resolved

ID="$(curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents?status=resolved" | python3 -c 'import json,sys; print(json.load(sys.stdin)["incidents"][0]["id"])')"
curl -fsS -H "Authorization: Bearer interop-api-token" "$TOCSIN/v1/incidents/$ID" | python3 -c '
import json, sys
b = json.load(sys.stdin)
inc, tl = b["incident"], b["timeline"]
assert inc["status"] == "resolved", inc["status"]
assert tl and tl[-1].get("type") == "resolved", tl[-1] if tl else "empty timeline"
print(inc["key"] + " events=" + str(inc["event_count"]) + " timeline: " + ", ".join(str(e.get("type")) for e in tl))
' || fail "timeline of incident $ID"

# Prometheus' own view: its notifications sent, none failed. The incident may
# resolve before Prometheus sends the resolved alert: tocsin, like
# Alertmanager, resolves an alert whose endsAt (4 resend delays ahead) passed
# without a re-send. So wait for the second send too.
prom_sends() {
    local metrics
    metrics="$(curl -fsS "$PROM/metrics")" || return 1
    python3 - "$metrics" <<'EOF'
import re, sys
vals = {}
for line in sys.argv[1].splitlines():
    m = re.match(r'^(prometheus_notifications_(?:sent|errors|dropped)_total)(\{[^}]*\})?\s+(\S+)', line)
    if m:
        vals[m.group(1)] = vals.get(m.group(1), 0.0) + float(m.group(3))
print("prometheus: " + ", ".join(f"{k.split('_')[2]}={v:g}" for k, v in sorted(vals.items())))
sent = vals.get("prometheus_notifications_sent_total", 0)
errors = vals.get("prometheus_notifications_errors_total", 0)
sys.exit(0 if sent >= 2 and errors == 0 else 1)
EOF
}
# Prometheus scrapes tocsin's /metrics with the token: up == 1 (a refused
# scrape is up == 0).
scraped() {
    curl -fsS "$PROM/api/v1/query" --data-urlencode 'query=up{job="tocsin"}' \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r); sys.exit(0 if r and r[0]["value"][1] == "1" else 1)'
}
poll scraped || fail "Prometheus did not scrape tocsin's /metrics with its token: $POLL_OUT"
pass "prometheus scraped tocsin's /metrics with a token: $POLL_OUT"
unauth="$(curl -s -o /dev/null -w '%{http_code}' "$TOCSIN/metrics")"
[[ "$unauth" == 401 ]] || fail "GET /metrics without a token answered $unauth, not 401"
pass "/metrics without a token, from outside metrics_networks: 401"

poll prom_sends || fail "Prometheus reported errors sending to tocsin, or did not send the resolve: $POLL_OUT"
log "$POLL_OUT"
pass "prometheus sent its alerts to tocsin without errors"

pass "prometheus interop ($((SECONDS - START_SECONDS))s)"
