"""Online garbage collection (`berth_domain::gc`): what is collected, when,
and that nothing in use ever is."""
import hashlib
import json
import time

import pytest
import requests

from conftest import ADMIN, Registry, image, push_blob, put_manifest, sha256

GRACE, FENCE = 3, 1


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path / "data", extra_args=[
        "--var", f"gc_grace_seconds={GRACE}", "--var", f"gc_fence_seconds={FENCE}"]).start()
    yield r
    r.stop()


def tick(reg):
    r = requests.post(f"http://{reg.host}/berth/jobs/gc/tick", auth=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["result"]["collection"]


def blob_file(reg, digest):
    hexd = digest.split(":")[1]
    return reg.data_dir / "blobs" / "sha256" / hexd[:2] / hexd


def stored_blobs(reg):
    return {"sha256:" + p.name for p in (reg.data_dir / "blobs" / "sha256").glob("*/*")}


def collect_until_quiet(reg, rounds=8):
    """Ticks until a run finds nothing more to do; the runs' outcomes summed."""
    total = {}
    for _ in range(rounds):
        out = tick(reg)
        for k, v in out.items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
        if out["next_due"] is None:
            return total
        time.sleep(max(0, out["next_due"] - time.time()) + 1.05)
    raise AssertionError(f"collection never finished: {total}")


def test_gc_frees_exactly_the_unreferenced_blobs_after_the_grace_window(reg):
    url = reg.url
    shared = b"shared base layer " * 100
    ma, da = image(url, "gc/app", layers=(shared, b"only in a " * 50), tag="a")
    mb, db = image(url, "gc/app", layers=(shared, b"only in b " * 50), tag="b",
                   config=b'{"architecture":"arm64","os":"linux"}')
    # Another repository uses the layer only image a had, by mount.
    only_a = ma["layers"][1]["digest"]
    r = requests.post(f"{url}/v2/gc/other/blobs/uploads/", params={"mount": only_a, "from": "gc/app"})
    assert r.status_code == 201
    image(url, "gc/other", layers=(b"only in a " * 50,), tag="x", config=b'{"os":"other"}')
    orphan = push_blob(url, "gc/app", b"uploaded, never used " * 10)
    before = stored_blobs(reg)

    # Untag a: its manifest is garbage once the grace has passed; its
    # config (used by nothing else) after that; the orphan too.
    assert requests.delete(f"{url}/v2/gc/app/manifests/a").status_code == 202
    out = tick(reg)
    assert out["blobs_deleted"] == 0 and out["manifests_deleted"] == 0 and out["blobs_marked"] == 0
    assert stored_blobs(reg) == before
    assert requests.get(f"{url}/v2/gc/app/manifests/{da}").status_code == 200

    total = collect_until_quiet(reg)
    config_a = ma["config"]["digest"]
    gone = {config_a, orphan}
    assert stored_blobs(reg) == before - gone
    assert total["blobs_deleted"] == 2 and total["manifests_deleted"] == 1
    sizes = {config_a: ma["config"]["size"], orphan: len(b"uploaded, never used " * 10)}
    assert total["bytes_freed"] == sum(sizes.values())
    for d in gone:
        assert requests.head(f"{url}/v2/gc/app/blobs/{d}").status_code == 404
        assert not blob_file(reg, d).exists()
    assert requests.get(f"{url}/v2/gc/app/manifests/{da}").status_code == 404
    # Everything b and gc/other use is intact and hashes to its digest.
    for repo, m in (("gc/app", mb), ("gc/other", None)):
        ref = "b" if repo == "gc/app" else "x"
        r = requests.get(f"{url}/v2/{repo}/manifests/{ref}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200
        m = r.json()
        for d in [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]:
            body = requests.get(f"{url}/v2/{repo}/blobs/{d}").content
            assert sha256(body) == d
    # Nothing more to collect, however often it runs.
    assert collect_until_quiet(reg).get("blobs_deleted", 0) == 0


def test_a_blob_reused_after_marking_is_kept(reg):
    url = reg.url
    layer = b"garbage that comes back " * 40
    m, d = image(url, "gc/back", layers=(layer,), tag="v1")
    assert requests.delete(f"{url}/v2/gc/back/manifests/{d}").status_code == 202
    ld = m["layers"][0]["digest"]
    # Wait until the layer is marked, then use it again: a HEAD (a client
    # checking before it pushes) and a manifest that references it.
    deadline = time.time() + 30
    while True:
        out = tick(reg)
        if out["blobs_marked"]:
            break
        assert time.time() < deadline
        time.sleep(1)
    assert requests.head(f"{url}/v2/gc/back/blobs/{ld}").status_code == 200
    cd = push_blob(url, "gc/back", b'{"reused":true}')
    m2 = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 15},
          "layers": [m["layers"][0]]}
    r, _, _ = put_manifest(url, "gc/back", "v2", m2)
    assert r.status_code == 201, r.text
    collect_until_quiet(reg)
    assert sha256(requests.get(f"{url}/v2/gc/back/blobs/{ld}").content) == ld
    assert blob_file(reg, ld).exists()
