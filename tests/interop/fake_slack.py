#!/usr/bin/env python3
"""A fake Slack Web API on loopback, for the interop scripts.

It answers the methods tocsin calls with the documented JSON shapes
(https://api.slack.com/methods), keeps the messages it was sent so that
conversations.history returns them with their metadata, and records every
call. GET /_calls returns the calls as a JSON list.

With --rate-limit-first-dm, the first chat.postMessage to a DM channel gets
HTTP 429 with `Retry-After: 1`, as Slack does: the page must still arrive
exactly once.

Usage: fake_slack.py PORT [--rate-limit-first-dm]
"""

import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
CALLS = []
MESSAGES = {}  # channel -> list of messages, newest first
TAKEN = set()
STATE = {"seq": 0, "limited": False}
RATE_LIMIT_FIRST_DM = "--rate-limit-first-dm" in sys.argv


def channel_obj(cid, name):
    return {"id": cid, "name": name, "name_normalized": name, "created": 1700000000,
            "is_channel": True, "is_private": False, "is_archived": False, "is_member": True}


def params(handler, body):
    out = {}
    query = urllib.parse.urlparse(handler.path).query
    for k, v in urllib.parse.parse_qsl(query):
        out[k] = v
    ctype = handler.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            parsed = json.loads(body or b"{}")
            if isinstance(parsed, dict):
                out.update(parsed)
        except ValueError:
            pass
    else:
        for k, v in urllib.parse.parse_qsl(body.decode("utf-8", "replace")):
            out[k] = v
    for k in ("metadata", "blocks"):
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out


def answer(method, p):
    """Returns (status, body, retry_after)."""
    STATE["seq"] += 1
    seq = STATE["seq"]
    ts = "1700000000.%06d" % seq
    if method == "conversations.create":
        name = p.get("name", "")
        if name in TAKEN:
            return 200, {"ok": False, "error": "name_taken"}, None
        TAKEN.add(name)
        return 200, {"ok": True, "channel": channel_obj("C%04d" % seq, name)}, None
    if method in ("conversations.invite", "conversations.setTopic", "conversations.archive"):
        ch = p.get("channel", "")
        return 200, {"ok": True, "channel": channel_obj(ch, "x"), "topic": p.get("topic", "")}, None
    if method == "conversations.open":
        users = p.get("users", "")
        user = users[0] if isinstance(users, list) else str(users).split(",")[0]
        return 200, {"ok": True, "channel": {"id": "D" + user}}, None
    if method == "conversations.history":
        ch = p.get("channel", "")
        return 200, {"ok": True, "messages": MESSAGES.get(ch, []), "has_more": False}, None
    if method == "chat.postMessage":
        ch = p.get("channel", "")
        if RATE_LIMIT_FIRST_DM and ch.startswith("D") and not STATE["limited"]:
            STATE["limited"] = True
            return 429, {"ok": False, "error": "ratelimited"}, 1
        msg = {"type": "message", "ts": ts, "text": p.get("text", ""), "bot_id": "B1"}
        if "metadata" in p:
            msg["metadata"] = p["metadata"]
        MESSAGES.setdefault(ch, []).insert(0, msg)
        return 200, {"ok": True, "channel": ch, "ts": ts, "message": msg}, None
    if method == "chat.update":
        return 200, {"ok": True, "channel": p.get("channel", ""), "ts": p.get("ts", ""),
                     "text": p.get("text", ""), "message": {"text": p.get("text", "")}}, None
    return 200, {"ok": False, "error": "unknown_method:" + method}, None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, retry_after=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        if retry_after is not None:
            self.send_header("retry-after", str(retry_after))
        self.end_headers()
        self.wfile.write(data)

    def handle_api(self, body):
        path = urllib.parse.urlparse(self.path).path
        if path == "/_calls":
            with LOCK:
                return self.send(200, CALLS)
        if not path.startswith("/api/"):
            return self.send(404, {"ok": False, "error": "unknown_path"})
        method = path[len("/api/"):]
        p = params(self, body)
        with LOCK:
            if self.headers.get("authorization") != "Bearer xoxb-interop-token":
                status, out, retry = 200, {"ok": False, "error": "invalid_auth"}, None
            else:
                status, out, retry = answer(method, p)
            CALLS.append({"method": method, "params": p, "status": status,
                          "ok": out.get("ok"), "error": out.get("error")})
        self.send(status, out, retry)

    def do_GET(self):
        self.handle_api(b"")

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        self.handle_api(self.rfile.read(length))


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()
