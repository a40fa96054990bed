"""Crash safety: kill -9 the host in the middle of uploads, restart it on
the same data, and check that nothing partial is visible and that
acknowledged bytes are still there."""

import hashlib
import os
import threading
import time

import requests

from conftest import Registry, image, sha256

CHUNK = 1 << 20


def slow_body(chunks, started, delay=0.02):
    for i, c in enumerate(chunks):
        if i == 2:
            started.set()
        time.sleep(delay)
        yield c


def send_in_background(fn):
    result = {}

    def go():
        try:
            result["r"] = fn()
        except requests.RequestException as e:
            result["e"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, result


def test_kill_mid_upload_leaves_no_partial_state(tmp_path):
    data_dir = tmp_path / "data"
    reg = Registry(data_dir).start()
    url, repo = reg.url, "crash/repo"
    # Something committed before the crash must survive it.
    _, kept = image(url, repo, tag="kept")
    chunks = [os.urandom(CHUNK) for _ in range(200)]
    data = b"".join(chunks)
    digest = sha256(data)

    # 1. A monolithic upload killed mid-stream.
    started = threading.Event()
    t1, _ = send_in_background(lambda: requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                                                      data=slow_body(chunks, started)))
    # 2. A session: one acknowledged chunk, then a streamed PATCH killed mid-way.
    loc = requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
    r = requests.patch(f"{url}{loc}", data=data[:CHUNK * 10], headers={"Content-Range": f"0-{CHUNK * 10 - 1}"})
    assert r.status_code == 202
    started2 = threading.Event()
    t2, _ = send_in_background(lambda: requests.patch(f"{url}{loc}", data=slow_body(chunks[10:], started2)))
    assert started.wait(30) and started2.wait(30)
    time.sleep(0.2)
    reg.kill()
    t1.join(10)
    t2.join(10)

    reg = Registry(data_dir, port=reg.port).start()
    try:
        # No partial blob under the digest, and no temporary leftovers.
        assert requests.head(f"{url}/v2/{repo}/blobs/{digest}").status_code == 404
        assert reg.storage.leftovers() == []
        for d in reg.storage.digests():
            assert sha256(reg.storage.read(d)) == d, "a published blob is corrupt"
        # Committed metadata survived.
        assert requests.get(f"{url}/v2/{repo}/manifests/kept").headers["Docker-Content-Digest"] == kept
        # The acknowledged chunk is still there; resume from where the upload stands.
        status = requests.get(f"{url}{loc}")
        assert status.status_code == 204
        have = int(status.headers["Range"].split("-")[1]) + 1
        assert have >= CHUNK * 10
        r = requests.patch(f"{url}{loc}", data=data[have:], headers={"Content-Range": f"{have}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        r = requests.put(f"{url}{loc}", params={"digest": digest})
        assert r.status_code == 201, r.text
        got = hashlib.sha256()
        for c in requests.get(f"{url}/v2/{repo}/blobs/{digest}", stream=True).iter_content(CHUNK):
            got.update(c)
        assert "sha256:" + got.hexdigest() == digest
    finally:
        reg.stop()


def test_graceful_shutdown_finishes_in_flight_requests(tmp_path):
    reg = Registry(tmp_path / "data").start()
    url, repo = reg.url, "crash/graceful"
    chunks = [os.urandom(CHUNK) for _ in range(30)]
    digest = sha256(b"".join(chunks))
    started = threading.Event()
    t, result = send_in_background(lambda: requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                                                         data=slow_body(chunks, started, delay=0.05)))
    assert started.wait(30)
    reg.stop()  # SIGTERM while the upload streams
    t.join(60)
    assert result.get("r") is not None and result["r"].status_code == 201, result
    reg = Registry(tmp_path / "data", port=reg.port).start()
    try:
        assert requests.head(f"{url}/v2/{repo}/blobs/{digest}").status_code == 200
    finally:
        reg.stop()
