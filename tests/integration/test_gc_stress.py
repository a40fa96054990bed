"""Garbage collection under load, in the style of zot's gc-stress: clients
push, pull, delete and re-push images whose blobs keep becoming garbage,
while the collector runs every second with a zero grace window and a
2 s fence (how long a client may take between checking a blob and pushing
the manifest that names it; the default is 600 s). Not one client
request may fail, every pulled blob must hash to its digest, and
at the end storage holds exactly what the live manifests use.

`BERTH_GC_STRESS_SECONDS` sets the length (default 40 s, what fits CI)."""
import hashlib
import json
import os
import random
import threading
import time

import requests

from conftest import ADMIN, Registry, sha256

SECONDS = float(os.environ.get("BERTH_GC_STRESS_SECONDS", "40"))
WORKERS = 6
# Small pools, so blobs keep turning into garbage and back: a few layers
# every client uses, and a few each client has to itself.
SHARED = [hashlib.sha256(b"shared %d" % i).digest() * (64 * (i + 1)) for i in range(3)]
OWN = lambda n: [hashlib.sha256(b"own %d %d" % (n, i)).digest() * (32 * (i + 1)) for i in range(16)]
CONFIGS = [json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode() for i in range(4)]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Client:
    def __init__(self, url, repo, failures):
        self.url, self.repo, self.failures = url, repo, failures
        self.s = requests.Session()
        self.requests = 0

    def expect(self, r, *ok, what=""):
        self.requests += 1
        if r.status_code not in ok:
            self.failures.append(f"{what} {r.request.method} {r.url} -> {r.status_code} {r.text[:200]}")
            return False
        return True

    def push_blob(self, data):
        d = sha256(data)
        r = self.s.head(f"{self.url}/v2/{self.repo}/blobs/{d}")
        if not self.expect(r, 200, 404, what="check"):
            return None
        if r.status_code == 404:
            r = self.s.post(f"{self.url}/v2/{self.repo}/blobs/uploads/", params={"digest": d}, data=data)
            if not self.expect(r, 201, what="upload"):
                return None
        return {"digest": d, "size": len(data)}

    def push(self, tag, rnd, pool):
        config = self.push_blob(rnd.choice(CONFIGS))
        layers = [self.push_blob(l) for l in rnd.sample(pool, rnd.randint(1, 2))]
        if config is None or None in layers:
            return None
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **l} for l in layers]}
        body = json.dumps(m).encode()
        r = self.s.put(f"{self.url}/v2/{self.repo}/manifests/{tag}", data=body,
                       headers={"Content-Type": OCI_MANIFEST})
        return sha256(body) if self.expect(r, 201, what="manifest push") else None

    def pull(self, tag):
        r = self.s.get(f"{self.url}/v2/{self.repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        if not self.expect(r, 200, what="manifest pull"):
            return
        m = r.json()
        for d in [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]:
            r = self.s.get(f"{self.url}/v2/{self.repo}/blobs/{d}")
            if self.expect(r, 200, what="blob pull") and sha256(r.content) != d:
                self.failures.append(f"blob {d} of {self.repo}:{tag} does not hash to its digest")


def test_pushes_and_pulls_never_fail_while_gc_runs_every_second(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=[
        "--var", "gc_grace_seconds=0", "--var", "gc_fence_seconds=2",
        "--var", "gc_schedule=* * * * * *", "--var", "gc_delete_untagged=true"]).start()
    try:
        failures, clients = [], []
        stop = time.time() + SECONDS

        def work(n):
            rnd = random.Random(n)
            c = Client(reg.url, f"stress/w{n}", failures)
            clients.append(c)
            pool = SHARED + OWN(n)
            i = 0
            while time.time() < stop:
                tag = f"t{i % 2}"
                digest = c.push(tag, rnd, pool)
                if digest is None:
                    continue
                c.pull(tag)
                # Make garbage: drop the manifest (its tag goes with it)
                # now and then, so its blobs are collected and re-pushed.
                if rnd.random() < 0.5:
                    c.expect(c.s.delete(f"{reg.url}/v2/{c.repo}/manifests/{digest}"), 202, what="delete")
                i += 1

        stored = reg.storage.digests
        seen, vanished, returned = set(), set(), set()

        def watch():
            # Blobs that were collected during the run, and of those, the
            # ones pushed again afterwards.
            while time.time() < stop:
                now = stored()
                returned.update(vanished & now)
                vanished.update(seen - now)
                seen.update(now)
                time.sleep(0.1)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(WORKERS)]
        threads.append(threading.Thread(target=watch))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(c.requests for c in clients)
        assert not failures, f"{len(failures)} of {total} requests failed: {failures[:5]}"
        print(f"{total} requests, {len(vanished)} blobs collected during the run, {len(returned)} of them pushed again")
        assert total > 500, total

        # The collector got real work done during the run: blobs were
        # deleted, and pushed again after.
        assert vanished and returned, (len(vanished), len(returned))
        status = requests.get(f"http://{reg.host}/berth/jobs/gc", auth=ADMIN).json()
        assert status["last_run"]["outcome"] == "succeeded", status

        # Every live manifest's blobs are intact; once the collector has
        # caught up, storage holds exactly them.
        live = set()
        for n in range(WORKERS):
            repo = f"stress/w{n}"
            tags = requests.get(f"{reg.url}/v2/{repo}/tags/list").json().get("tags") or []
            for tag in tags:
                r = requests.get(f"{reg.url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200
                m = r.json()
                for d in [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]:
                    body = requests.get(f"{reg.url}/v2/{repo}/blobs/{d}").content
                    assert sha256(body) == d, f"{repo}:{tag} lost {d}"
                    live.add(d)
        deadline = time.time() + 30
        while stored() != live:
            if time.time() > deadline:
                # What metadata says about what was left: for the report.
                db = reg.db()
                left = {d: [(k, v[:160]) for k, v in db.execute(
                    "SELECT key, value FROM kv WHERE instr(key, ?) > 0 OR instr(CAST(value AS TEXT), ?) > 0", (d, d))]
                    for d in stored() - live}
                raise AssertionError(f"left over: {left}, missing: {live - stored()}")
            time.sleep(1)
    finally:
        reg.stop()
