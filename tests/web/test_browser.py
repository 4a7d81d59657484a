#!/usr/bin/env python3
"""A real browser on the page: Debian's headless Chromium, driven over the DevTools
protocol (a small WebSocket client, standard library only). Types "dog" into the search
box, reads the DOM (a photo with a dog first, its alt is its caption, the thumbnail decoded),
opens the detail view (caption, tags, path, similar photos) and the status view, checks a
phone-sized viewport and that the console stayed clean (no CSP refusals, no exceptions).
Screenshots are saved in WORKDIR as test artifacts.

Usage: test_browser.py CAPSEARCH PHOTOS_DIR MODELS_DIR WORKDIR CHROMIUM
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webfixture import Server, build_index, check, finish, run_index  # noqa: E402

capsearch, photos, models, work = sys.argv[1:5]
chromium = sys.argv[5] if len(sys.argv) > 5 else ""
if not chromium or chromium.endswith("NOTFOUND") or not shutil.which(chromium):
    print("skip: no chromium (apt-get install chromium, or scripts/deps.sh)")
    sys.exit(77)
lib, env = build_index(capsearch, photos, models, work)
run_index(capsearch, env, lib)
srv = Server(capsearch, env, "--cache-dir", os.path.join(work, "cache"))


class CDP:
    """Chrome DevTools Protocol over one WebSocket (RFC 6455 client frames are masked)."""

    def __init__(self, ws_url):
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.s.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("websocket refused: " + head.decode(errors="replace"))
        self.next_id = 0
        self.events = []

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("devtools closed the connection")
            buf += chunk
        return buf

    def _recv(self):
        data = b""
        while True:
            b0, b1 = self._read(2)
            ln = b1 & 0x7F
            if ln == 126:
                ln = struct.unpack(">H", self._read(2))[0]
            elif ln == 127:
                ln = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(ln)
            if b0 & 0x0F == 0x8:
                raise RuntimeError("devtools closed the websocket")
            data += payload
            if b0 & 0x80:
                return json.loads(data)

    def call(self, method, **params):
        self.next_id += 1
        msg = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        head = bytes([0x81])
        if len(msg) < 126:
            head += bytes([0x80 | len(msg)])
        elif len(msg) < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", len(msg))
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", len(msg))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
        while True:
            m = self._recv()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.1)
        return None

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", format="png")
        open(path, "wb").write(base64.b64decode(r["data"]))
        print("screenshot:", path)


profile = tempfile.mkdtemp(prefix="capsearch-chromium-")
browser = subprocess.Popen(
    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
     "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
     "--window-size=1280,900", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    portfile = os.path.join(profile, "DevToolsActivePort")
    end = time.time() + 90
    while not os.path.exists(portfile) or os.path.getsize(portfile) == 0:
        if time.time() > end or browser.poll() is not None:
            print("FAIL: chromium did not start")
            sys.exit(1)
        time.sleep(0.2)
    dport = int(open(portfile).read().split()[0])
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{dport}/json/list", timeout=30))
    page = next(t for t in targets if t["type"] == "page")
    cdp = CDP(page["webSocketDebuggerUrl"])
    for domain in ("Page", "Runtime", "Log"):
        cdp.call(domain + ".enable")
    base = f"http://127.0.0.1:{srv.port}/"
    cdp.call("Page.navigate", url=base)
    check(cdp.wait("document.readyState === 'complete' && !!document.getElementById('q')"),
          "the page loads")
    check(cdp.js("document.activeElement && document.activeElement.id") == "q",
          "the search box has the focus")
    check(cdp.js("document.querySelector('label[for=q]').textContent.length > 0"),
          "the search box has a label")
    for ch in "dog":     # typed as keys: results appear as you type
        cdp.call("Input.dispatchKeyEvent", type="keyDown", text=ch, key=ch)
        cdp.call("Input.dispatchKeyEvent", type="keyUp", key=ch)
        time.sleep(0.05)
    check(cdp.wait("document.querySelectorAll('#results li').length > 0"), "results appear for 'dog'")
    st, api = srv.get_json("/api/search?q=dog&limit=40")
    first = cdp.js("""(() => { const li = document.querySelector('#results li');
        const img = li.querySelector('img');
        return {path: li.dataset.path, id: li.dataset.id, alt: img.alt,
                caption: li.querySelector('.caption').textContent,
                tags: (li.querySelector('.tags') || {}).textContent || null}; })()""")
    # Two photos hold a dog: dog.jpg, and person.jpg (a dog beside the woman and her horse).
    check(first["path"] == api["results"][0]["path"] and
          first["path"] in (os.path.join(lib, "dog.jpg"), os.path.join(lib, "person.jpg")),
          "the first card is the API's first result, a photo with a dog", first)
    check(first["alt"] == api["results"][0]["caption"] and first["alt"],
          "its alt is its caption", (first, api["results"][0]))
    check(first["caption"] == api["results"][0]["caption"] and first["tags"] == api["results"][0]["tags"],
          "caption and tags under it")
    n = cdp.js("document.querySelectorAll('#results li').length")
    check(n == len(api["results"]), f"as many cards as the API's results ({n})")
    check(cdp.wait("(() => { const i = document.querySelector('#results li img');"
                   " return i.complete && i.naturalWidth > 0; })()"), "the thumbnail decodes")
    check("photo" in cdp.js("document.getElementById('summary').textContent"),
          "the live region announces the count")
    check(cdp.js("location.hash").startswith("#/?q=dog"), "the query is in the address")
    cdp.screenshot(os.path.join(work, "search.png"))

    # detail view, by keyboard-reachable link
    cdp.js("document.querySelector('#results li a').focus()")
    cdp.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter",
             windowsVirtualKeyCode=13, nativeVirtualKeyCode=13, text="\r")
    cdp.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter",
             windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)
    check(cdp.wait("!document.getElementById('view-detail').hidden"), "Enter on a result opens the detail view")
    check(cdp.wait(f"document.getElementById('detail-caption').textContent === {json.dumps(first['alt'])}"),
          "detail: the caption")
    name = json.dumps(os.path.basename(first["path"]))
    facts = cdp.wait(f"document.getElementById('detail-facts').textContent.includes({name}) &&"
                     " document.getElementById('detail-facts').textContent")
    check(facts and first["tags"] in facts, "detail: tags and path", facts)
    check(cdp.wait("(() => { const i = document.getElementById('detail-img');"
                   " return i.complete && i.naturalWidth >= 512 && i.alt.length > 0; })()"),
          "detail: the large image, with its alt")
    sim = cdp.wait("document.querySelectorAll('#similar li').length > 0 &&"
                   " [...document.querySelectorAll('#similar li')].map(l => l.dataset.id)")
    check(sim and first["id"] not in sim, "detail: similar photos, without the photo itself", sim)
    cdp.screenshot(os.path.join(work, "detail.png"))

    # status view
    cdp.js("document.getElementById('nav-status').click()")
    st, status = srv.get_json("/api/status")
    text = cdp.wait("!document.getElementById('view-status').hidden &&"
                    " document.getElementById('status-facts').textContent.includes('Photos indexed') &&"
                    " document.getElementById('status-facts').textContent")
    check(text and f"Photos indexed{status['images']['ok']}" in text and "not running" in text,
          "status view: counts and daemon state", text)
    check(cdp.js("document.getElementById('nav-status').getAttribute('aria-current')") == "page",
          "status view: the nav says where we are")
    cdp.screenshot(os.path.join(work, "status.png"))

    # a phone
    cdp.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
    cdp.call("Page.navigate", url=base + "#/?q=dog")
    check(cdp.wait("document.querySelectorAll('#results li').length > 0"), "phone: the query from the address")
    check(cdp.js("document.documentElement.scrollWidth <= 390"), "phone: no sideways scrolling",
          cdp.js("document.documentElement.scrollWidth"))
    cdp.screenshot(os.path.join(work, "phone.png"))

    cdp.call("Runtime.evaluate", expression="1")        # drain events
    bad = [e for e in cdp.events if e.get("method") == "Runtime.exceptionThrown" or
           (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    check(not bad, "no exceptions, CSP refusals or console errors", bad[:3])
finally:
    browser.terminate()
    try:
        browser.wait(10)
    except subprocess.TimeoutExpired:
        browser.kill()
    shutil.rmtree(profile, ignore_errors=True)
    srv.stop()
finish()
