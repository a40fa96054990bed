"""The event log (issue 10): every acknowledged change to a repository
writes its event in the same commit — pushes by tag and by digest, tag and
manifest deletes through the registry API and SWR's API, repository
deletes — none for a refused change, none lost when the host is killed
right after answering; pulls raise a last-pull time without waiting."""

import json
import threading
import time

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkswr.v2 import (
    CreateRepoTagRequest,
    CreateRepoTagRequestBody,
    DeleteRepoRequest,
    DeleteRepoTagRequest,
    SwrClient,
)

from conftest import Registry, image, push_blob, put_manifest, skopeo_push

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    r = Registry(tmp_path_factory.mktemp("events") / "data").start()
    r.iam("tenant-create", "acme", "--password", "acme-pw")
    r.key = r.iam("key-create", "acme", "acme")
    yield r
    r.stop()


def events(reg, after=None, limit=1000):
    """Every event after `after`, through the admin API's pages."""
    out, cursor = [], after
    while True:
        params = {"limit": limit, **({"after": cursor} if cursor else {})}
        r = requests.get(f"{reg.url}/berth/v1/events", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["events"]
        if body["next"] is None:
            return out
        cursor = body["next"]


def last_id(reg):
    all_ = events(reg)
    return all_[-1]["id"] if all_ else None


def of(evts, repo):
    return [e for e in evts if e["repository"] == repo]


def test_pushes_and_deletes_through_the_registry_api_write_events(reg, tmp_path):
    acme = f"http://acme:acme-pw@{reg.host}"
    start = last_id(reg)
    # A real client pushes by tag.
    p = skopeo_push(reg.host, "acme:acme-pw", "acme-ev/app:v1", tmp_path)
    assert p.returncode == 0, p.stderr
    # By digest, then a tag delete and a manifest delete.
    m, d2 = image(acme, "acme-ev/app", layers=[b"second"])
    _, d3 = image(acme, "acme-ev/app", layers=[b"third"], tag="v3")
    assert requests.delete(f"{acme}/v2/acme-ev/app/manifests/v3").status_code == 202
    assert requests.delete(f"{acme}/v2/acme-ev/app/manifests/{d2}").status_code == 202
    evts = of(events(reg, start), "acme-ev/app")
    kinds = [(e["type"], e["tag"], e["digest"]) for e in evts]
    v1 = requests.head(f"{acme}/v2/acme-ev/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).headers["Docker-Content-Digest"]
    assert kinds == [
        ("manifest.pushed", "v1", v1),
        ("manifest.pushed", None, d2),
        ("manifest.pushed", "v3", d3),
        ("tag.deleted", "v3", d3),
        ("manifest.deleted", None, d2),
    ]
    first = evts[0]
    assert first["tenant"] == "acme" and first["operator"] == "acme@acme"
    assert first["client"].startswith("127.0.0.1:")
    assert first["media_type"] == OCI_MANIFEST and first["size"] > 0
    assert evts[1]["size"] == len(json.dumps(m).encode())
    # Ids grow, and times do not go back.
    ids = [int(e["id"]) for e in evts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    times = [e["time"] for e in evts]
    assert times == sorted(times) and times[0].endswith("Z")


def test_refused_changes_write_no_event(reg):
    acme = f"http://acme:acme-pw@{reg.host}"
    image(acme, "acme-ev/refused", tag="v1")
    start = last_id(reg)
    # A manifest whose layer is not in the repository.
    bad = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
           "layers": []}
    r, _, _ = put_manifest(acme, "acme-ev/refused", "v2", bad)
    assert r.status_code == 400
    # A delete of what is not there, and a push without push rights.
    assert requests.delete(f"{acme}/v2/acme-ev/refused/manifests/nope").status_code == 404
    r, _, _ = put_manifest(f"http://{reg.host}", "acme-ev/refused", "v3", bad)
    assert r.status_code == 401
    assert of(events(reg, start), "acme-ev/refused") == []


def test_changes_through_the_management_api_write_events(reg):
    acme = f"http://acme:acme-pw@{reg.host}"
    _, digest = image(acme, "acme-swr/app", tag="1.0")
    start = last_id(reg)
    c = SwrClient.new_builder().with_credentials(
        BasicCredentials(reg.key["ak"], reg.key["sk"])).with_endpoints([reg.anon_url]).build()
    c.create_repo_tag(CreateRepoTagRequest(namespace="acme-swr", repository="app",
                      body=CreateRepoTagRequestBody(source_tag="1.0", destination_tag="stable")))
    c.delete_repo_tag(DeleteRepoTagRequest(namespace="acme-swr", repository="app", tag="1.0"))
    c.delete_repo(DeleteRepoRequest(namespace="acme-swr", repository="app"))
    evts = of(events(reg, start), "acme-swr/app")
    assert [(e["type"], e["tag"], e["digest"]) for e in evts] == [
        ("manifest.pushed", "stable", digest),
        ("tag.deleted", "1.0", digest),
        ("repository.deleted", None, None),
    ]
    assert evts[0]["media_type"] == OCI_MANIFEST
    assert all(e["operator"] == "acme@acme" and e["tenant"] == "acme" for e in evts)


def test_the_event_log_is_for_administrators_and_pages(reg):
    acme = f"http://acme:acme-pw@{reg.host}"
    image(acme, "acme-ev/paged", tag="a")
    image(acme, "acme-ev/paged", tag="b")
    r = requests.get(f"http://acme:acme-pw@{reg.host}/berth/v1/events")
    assert r.status_code == 403 and r.json()["errorCode"].startswith("SVCSTG.SWR.403")
    for bad in ({"after": "x"}, {"limit": "0"}, {"limit": "1001"}):
        r = requests.get(f"{reg.url}/berth/v1/events", params=bad)
        assert r.status_code == 400 and "errorMsg" in r.json(), bad
    one = requests.get(f"{reg.url}/berth/v1/events", params={"limit": 1}).json()
    assert len(one["events"]) == 1 and one["next"] == one["events"][0]["id"]
    assert events(reg, limit=1) == events(reg)


def test_pulls_raise_the_last_pull_time_without_waiting(reg):
    acme = f"http://acme:acme-pw@{reg.host}"
    _, digest = image(acme, "acme-ev/pulled", tag="v1")
    key = f"pulled/acme-ev/pulled:{digest}"

    def pulled():
        with reg.db() as c:
            row = c.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # A HEAD is not a pull.
    assert requests.head(f"{acme}/v2/acme-ev/pulled/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200
    time.sleep(1.5)
    assert pulled() is None
    before = int(time.time())
    for _ in range(20):
        assert requests.get(f"{acme}/v2/acme-ev/pulled/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200
    deadline = time.time() + 5
    while pulled() is None and time.time() < deadline:
        time.sleep(0.2)
    assert before <= pulled() <= int(time.time())


def test_no_acknowledged_change_loses_its_event_when_the_host_is_killed(tmp_path):
    """kill -9 while pushes are under way: every push that was answered 201
    has its event after a restart, and every event is of a manifest that
    was stored."""
    reg = Registry(tmp_path / "data").start()
    try:
        url = reg.url
        config = push_blob(url, "crash/app", b"{}")
        acked, stop = [], threading.Event()

        def pusher(n):
            i = 0
            while not stop.is_set():
                m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
                     "layers": [], "annotations": {"n": f"{n}-{i}"}}
                try:
                    r, digest, _ = put_manifest(url, "crash/app", f"t{n}-{i}", m)
                except requests.RequestException:
                    return
                if r.status_code == 201:
                    acked.append(digest)
                i += 1

        threads = [threading.Thread(target=pusher, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.5)
        reg.kill()
        stop.set()
        for t in threads:
            t.join()
        assert len(acked) > 20
        reg.start()
        pushed = {e["digest"] for e in of(events(reg), "crash/app") if e["type"] == "manifest.pushed"}
        assert set(acked) <= pushed
        for d in pushed:
            assert requests.head(f"{url}/v2/crash/app/manifests/{d}", headers={"Accept": OCI_MANIFEST}).status_code == 200
    finally:
        reg.stop()
