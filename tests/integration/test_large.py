"""A 1 GiB layer streamed through in one request, with flat host memory."""

import hashlib
import os
import threading
import time

import requests

from conftest import sha256

GIB = 1 << 30
CHUNK = 4 << 20


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssWatch:
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()


def test_one_gib_layer_monolithic_and_streamed_patch(fresh_registry):
    url, repo = fresh_registry.url, "large/layer"
    block = os.urandom(CHUNK)
    n = GIB // CHUNK
    h = hashlib.sha256()
    for i in range(n):
        h.update(block[i % 7:] + block[: i % 7])
    digest = "sha256:" + h.hexdigest()

    class Body:
        """Streams the layer; with a length, requests sends Content-Length (as containerd does)."""

        def __init__(self, sized):
            self.sized = sized

        def __iter__(self):
            for i in range(n):
                yield block[i % 7:] + block[: i % 7]

        def __len__(self):
            return GIB if self.sized else 0

    def body():
        return iter(Body(False))

    baseline = rss_kib(fresh_registry.proc.pid)
    with RssWatch(fresh_registry.proc.pid) as watch:
        r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=Body(True))
        assert r.status_code == 201, r.text
        got, size = hashlib.sha256(), 0
        for c in requests.get(f"{url}/v2/{repo}/blobs/{digest}", stream=True).iter_content(1 << 20):
            got.update(c)
            size += len(c)
        assert size == GIB and "sha256:" + got.hexdigest() == digest
        # The same bytes again as one streamed PATCH (docker's way), into another repository.
        loc = requests.post(f"{url}/v2/{repo}2/blobs/uploads/").headers["Location"]
        r = requests.patch(f"{url}{loc}", data=body())
        assert r.status_code == 202 and r.headers["Range"] == f"0-{GIB - 1}"
        assert requests.put(f"{url}{loc}", params={"digest": digest}).status_code == 201
    growth_mib = (watch.peak - baseline) / 1024
    print(f"host RSS: baseline {baseline / 1024:.0f} MiB, peak {watch.peak / 1024:.0f} MiB")
    assert growth_mib < 200, f"host memory grew by {growth_mib:.0f} MiB while streaming 1 GiB"


def test_layer_size_limit(tmp_path):
    from conftest import Registry
    reg = Registry(tmp_path / "data", extra_args=["--var", "max_layer_bytes=1000"]).start()
    try:
        data = os.urandom(2000)
        r = requests.post(f"{reg.url}/v2/lim/blobs/uploads/", params={"digest": sha256(data)}, data=data)
        assert r.status_code == 413 and r.json()["errors"][0]["code"] == "SIZE_INVALID"
        loc = requests.post(f"{reg.url}/v2/lim/blobs/uploads/").headers["Location"]
        r = requests.patch(f"{reg.url}{loc}", data=iter([data]))
        assert r.status_code == 413
        ok = os.urandom(500)
        assert requests.post(f"{reg.url}/v2/lim/blobs/uploads/", params={"digest": sha256(ok)}, data=ok).status_code == 201
    finally:
        reg.stop()
