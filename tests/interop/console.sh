#!/usr/bin/env bash
# Browser test: Debian's chromium, driven by chromium-driver through PyPI's
# selenium, uses the web console of a live tocsin: signs in with a token
# (keyboard only), sees an incident appear in the list without a reload,
# acknowledges it, adds an override on the schedule's week view, reads the
# response report, reads the services page, starts and ends a maintenance
# window, checks the
# text contrast of every page (WCAG AA), and saves screenshots in
# docs/screenshots/ (the README shows them).
#
# Usage: tests/interop/console.sh
#   TOCSIN_BIN=/path/to/tocsin   use this binary instead of building one
#   KEEP_TMP=1                   keep the temp dir (config, log, data)
#   SCREENSHOTS=DIR              where to save them (default docs/screenshots)
# Needs: curl, python3 with pip; chromium and chromium-driver (installed
# with apt-get if missing).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
START_SECONDS=$SECONDS

source "$HERE/lib.sh"

command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required"
need_command chromium chromium
need_command chromedriver chromium-driver
need_python_module selenium selenium
log "selenium $(python3 -c 'import selenium; print(selenium.__version__)'), $(chromedriver --version | cut -d' ' -f1-2)"

tocsin_bin

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-interop-console.XXXXXX")"
PORT="$(free_port)"
TOCSIN="http://127.0.0.1:$PORT"
SHOTS="${SCREENSHOTS:-$REPO/docs/screenshots}"
mkdir -p "$SHOTS"

cat >"$TMP/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
[storage]
path = "$TMP/data"
[api]
token = "interop-api-token"
[console]
enabled = true
session_key = "interop-console-session-key-0123456789"
[log]
format = "human"
level = "info"
[[services]]
name = "db"
escalation_policy = "default"
[[users]]
name = "alice"
[[users]]
name = "bob"
[[schedules]]
name = "primary"
time_zone = "Europe/Berlin"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
start = "2026-01-05T09:00:00"
handoff = "0 0 9 * * Mon"
[[escalation_policies]]
name = "default"
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }]
delay = "5m"
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "interop-console-pd-key"
service = "db"
EOF

start_tocsin "$TOCSIN"
pass "tocsin is ready"

TOKEN="$(TOCSIN_URL="$TOCSIN" TOCSIN_API_TOKEN=interop-api-token "$TOCSIN_BIN" token create --user alice --scope admin | grep -o 'tsn_[0-9a-f_]*' | head -1)"
[[ -n "$TOKEN" ]] || fail "tocsin token create printed no token"

cat >"$TMP/console_check.py" <<'EOF'
import json, subprocess, sys, time, urllib.request
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from selenium.webdriver.support import expected_conditions as EC

base, token, shots = sys.argv[1], sys.argv[2], sys.argv[3]

# WCAG 2 contrast of every element with its own text, against the first
# opaque background behind it: 4.5:1, or 3:1 for large text.
CONTRAST = r"""
function lum(c) {
  var m = c.match(/[\d.]+/g).map(Number);
  var v = m.slice(0, 3).map(function (x) { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
  return [0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2], m.length > 3 ? m[3] : 1];
}
function bg(el) {
  for (; el; el = el.parentElement) {
    var c = getComputedStyle(el).backgroundColor, a = c.match(/[\d.]+/g).map(Number);
    if (a.length < 4 || a[3] > 0.5) return c;
  }
  return "rgb(255, 255, 255)";
}
var bad = [];
document.querySelectorAll("body *").forEach(function (el) {
  var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  if (!own || !el.offsetParent && el.tagName !== "BODY") return;
  var s = getComputedStyle(el), f = lum(s.color)[0], b = lum(bg(el))[0];
  var ratio = (Math.max(f, b) + 0.05) / (Math.min(f, b) + 0.05);
  var size = parseFloat(s.fontSize), large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) bad.push(el.tagName + " '" + el.textContent.trim().slice(0, 30) + "' " + ratio.toFixed(2));
});
return bad;
"""


def check(cond, what):
    if not cond:
        print("FAIL: " + what)
        sys.exit(1)
    print("PASS: " + what)


def contrast(page):
    bad = driver.execute_script(CONTRAST)
    check(not bad, "text contrast on the %s page passes WCAG AA %s" % (page, bad if bad else ""))


def trigger(dedup, summary):
    body = json.dumps({"routing_key": "interop-console-pd-key", "event_action": "trigger",
                       "dedup_key": dedup, "payload": {"summary": summary, "source": "db-1",
                                                       "severity": "critical",
                                                       "custom_details": {"disk": "95%"}}}).encode()
    req = urllib.request.Request(base + "/v2/enqueue", body, {"content-type": "application/json"})
    urllib.request.urlopen(req).read()


opts = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService("/usr/bin/chromedriver"))
wait = WebDriverWait(driver, 15)
try:
    driver.get(base + "/incidents")
    check(driver.current_url.endswith("/login"), "without a session the console sends the browser to /login")
    # Keyboard only: the token field has focus; Enter submits.
    active = driver.switch_to.active_element
    check(active.get_attribute("name") == "token", "the token field has the focus")
    active.send_keys(token + Keys.ENTER)
    wait.until(EC.url_contains("/incidents"))
    check("alice (admin scope)" in driver.page_source, "signed in as alice")
    contrast("sign-in")

    driver.execute_script("window.__noReload = true;")
    trigger("db-1-disk", "Disk 95% full on db-1")
    row = wait.until(EC.presence_of_element_located((By.ID, "row-INC-1")))
    check(driver.execute_script("return window.__noReload === true;"),
          "INC-1 appeared in the list without a reload")
    trigger("db-2-replica", "Replica lag 120s on db-2")
    wait.until(EC.presence_of_element_located((By.ID, "row-INC-2")))
    time.sleep(2.2)  # let the highlight fade before the screenshot
    contrast("incidents")
    driver.save_screenshot(shots + "/console-incidents.png")

    # Keyboard: tab to the INC-1 link and follow it.
    link = driver.find_element(By.CSS_SELECTOR, "#row-INC-1 a")
    body = driver.find_element(By.TAG_NAME, "body")
    for _ in range(40):
        body.send_keys(Keys.TAB) if driver.switch_to.active_element == body else driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element == link:
            break
    check(driver.switch_to.active_element == link, "the incident link is reachable with Tab")
    link.send_keys(Keys.ENTER)
    wait.until(EC.url_contains("/incidents/INC-1"))
    ack = driver.find_element(By.XPATH, "//button[text()='Acknowledge']")
    ack.send_keys(Keys.ENTER)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "dl.facts .badge.acknowledged")))
    check("by alice" in driver.page_source, "acknowledged as alice from the console")
    note = driver.find_element(By.NAME, "text")
    note.send_keys("Rotated the logs; *db-1* at 60%")
    driver.find_element(By.XPATH, "//button[text()='Add note']").click()
    wait.until(EC.presence_of_element_located((By.XPATH, "//li[contains(., 'Rotated the logs')]")))
    contrast("incident")
    driver.set_window_size(1280, 1500)
    driver.save_screenshot(shots + "/console-incident.png")
    driver.set_window_size(1280, 900)

    req = urllib.request.Request(base + "/v1/incidents/INC-1", headers={"authorization": "Bearer " + token})
    inc = json.load(urllib.request.urlopen(req))
    acks = [e for e in inc["timeline"] if e["type"] == "acknowledged"]
    check(acks and acks[0]["actor"]["name"]["user"] == "alice", "the API shows alice's acknowledgement")

    driver.get(base + "/oncall")
    contrast("on-call")
    driver.find_element(By.LINK_TEXT, "primary").click()
    wait.until(EC.url_contains("/schedules/primary"))
    user = driver.find_element(By.NAME, "user")
    user.send_keys("bob")
    driver.find_element(By.XPATH, "//button[text()='Add override']").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".shift.override")))
    check("Remove" in driver.page_source, "the override shows on the week view with a Remove button")
    contrast("schedule")
    driver.save_screenshot(shots + "/console-schedule.png")

    driver.get(base + "/incidents/INC-2")
    driver.find_element(By.NAME, "note").send_keys("Replica caught up")
    driver.find_element(By.XPATH, "//button[text()='Resolve']").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "dl.facts .badge.resolved")))
    check("<h2>Summary</h2>" in driver.page_source, "INC-2 resolved from the console, with its summary")

    driver.find_element(By.LINK_TEXT, "Reports").click()
    wait.until(EC.url_contains("/reports"))
    chart = driver.find_element(By.CSS_SELECTOR, "figure.chart svg")
    check("db 20" in chart.get_attribute("innerHTML"), "the report charts db's week")
    cells = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "table.report tbody td")]
    check(cells[2:4] == ["2", "1"] and cells[5] == "1", "the report counts 2 incidents, 1 acknowledged, 1 resolved: %s" % cells)
    contrast("reports")
    driver.save_screenshot(shots + "/console-reports.png")

    driver.find_element(By.LINK_TEXT, "Services").click()
    wait.until(EC.url_contains("/services"))
    check("Step 1: whoever is on call in primary; after 5m" in driver.find_element(By.ID, "service-db").text,
          "the services page shows db's policy and its step")
    contrast("services")
    driver.save_screenshot(shots + "/console-services.png")

    driver.find_element(By.LINK_TEXT, "Maintenance").click()
    wait.until(EC.url_contains("/maintenance"))
    driver.find_element(By.NAME, "duration").clear()
    driver.find_element(By.NAME, "duration").send_keys("2h")
    driver.find_element(By.NAME, "reason").send_keys("db upgrade" + Keys.ENTER)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.maintenance .badge.active")))
    check("made by alice" in driver.page_source, "a window started from the console, made by alice")
    contrast("maintenance")
    driver.save_screenshot(shots + "/console-maintenance.png")
    driver.find_element(By.XPATH, "//button[text()='End']").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.maintenance .badge.ended")))
    check("ended by alice" in driver.page_source, "the window ended from the console, by alice")
finally:
    driver.quit()
EOF

python3 "$TMP/console_check.py" "$TOCSIN" "$TOKEN" "$SHOTS" || fail "the browser check failed"
pass "console in chromium ($((SECONDS - START_SECONDS))s); screenshots in $SHOTS"
