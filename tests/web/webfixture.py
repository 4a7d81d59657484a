"""Shared by the web tests: a real index of the sample photos (made by `capsearch index`
with the real model) and a real `capsearch serve` process on a loopback port."""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
failures = []


def check(cond, what, detail=""):
    if cond:
        print("ok:", what)
    else:
        print("FAIL:", what, detail if detail else "")
        failures.append(what)


def finish():
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


def build_index(capsearch, photos, models, work, names=("dog", "horses", "kite", "eagle", "giraffe", "person")):
    for n in names:
        p = os.path.join(photos, n + ".jpg")
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            print(f"skip: no sample photo {n}.jpg in {photos}")
            sys.exit(SKIP)
    if not os.path.exists(os.path.join(models, "ssdlite_mobilenet_v2_coco.csw")):
        print(f"skip: no CNN weights in {models}")
        sys.exit(SKIP)
    shutil.rmtree(work, ignore_errors=True)
    lib = os.path.join(work, "lib")
    os.makedirs(lib)
    for n in names:
        shutil.copy(os.path.join(photos, n + ".jpg"), lib)
    env = dict(os.environ, CAPSEARCH_MODELS=models, CAPSEARCH_DB=os.path.join(work, "index.db"))
    return lib, env


def run_index(capsearch, env, *dirs):
    p = subprocess.run([capsearch, "index", "--quiet", "--jobs", "1", *dirs], env=env,
                       capture_output=True)
    if p.returncode != 0:
        print("FAIL: capsearch index", p.stderr.decode(errors="replace"))
        sys.exit(1)


class Server:
    def __init__(self, capsearch, env, *args):
        self.args = [capsearch, "serve", "--listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(self.args, env=env, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL)
        line = self.proc.stderr.readline().decode(errors="replace")
        while line and "listening on" not in line:
            print("serve:", line.rstrip())
            line = self.proc.stderr.readline().decode(errors="replace")
        m = re.search(r"http://\S+:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("capsearch serve did not start: " + line)
        self.port = int(m.group(1))

    def request(self, method, target, headers=None, body=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            h = {"Host": f"127.0.0.1:{self.port}"}
            h.update(headers or {})
            for k, v in h.items():
                if v is not None:
                    c.putheader(k, v)
            if body is not None:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get_json(self, target, headers=None):
        status, h, data = self.request("GET", target, headers)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, {"_raw": data}

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode
