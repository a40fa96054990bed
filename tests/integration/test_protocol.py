"""The OCI Distribution API, endpoint by endpoint, including error paths,
driven over HTTP against the real host."""

import hashlib
import json
import os

import requests

from conftest import image, push_blob, put_manifest, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def err(r):
    return r.json()["errors"][0]["code"]


def test_base_and_health(registry):
    r = requests.get(f"{registry.url}/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert requests.get(f"{registry.url}/healthz").status_code == 200


def test_unknown_endpoint_and_bad_names(registry):
    r = requests.get(f"{registry.url}/v2/a/nothing")
    assert r.status_code == 404 and err(r) == "UNSUPPORTED"
    for bad in ["UPPER", "a//b", "-a", "a_", "a" * 256]:
        r = requests.get(f"{registry.url}/v2/{bad}/tags/list")
        assert r.status_code == 400 and err(r) == "NAME_INVALID", bad
    assert requests.get(f"{registry.url}/v2/{'a' * 255}/tags/list").status_code == 404


def test_blob_get_head_range_delete(registry):
    url, repo = registry.url, "proto/blobs"
    data = os.urandom(100_000)
    d = push_blob(url, repo, data)
    h = requests.head(f"{url}/v2/{repo}/blobs/{d}")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == str(len(data))
    assert h.headers["Docker-Content-Digest"] == d
    assert h.headers["Accept-Ranges"] == "bytes"
    g = requests.get(f"{url}/v2/{repo}/blobs/{d}")
    assert g.content == data
    r = requests.get(f"{url}/v2/{repo}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = requests.get(f"{url}/v2/{repo}/blobs/{d}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = requests.get(f"{url}/v2/{repo}/blobs/{d}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and err(r) == "RANGE_INVALID"
    # Another repository cannot read it without mounting.
    r = requests.get(f"{url}/v2/proto/other/blobs/{d}")
    assert r.status_code == 404 and err(r) == "BLOB_UNKNOWN"
    assert requests.delete(f"{url}/v2/{repo}/blobs/{d}").status_code == 202
    r = requests.head(f"{url}/v2/{repo}/blobs/{d}")
    assert r.status_code == 404
    r = requests.delete(f"{url}/v2/{repo}/blobs/{d}")
    assert r.status_code == 404 and err(r) == "BLOB_UNKNOWN"


def test_digest_validation(registry):
    url, repo = registry.url, "proto/digests"
    r = requests.get(f"{url}/v2/{repo}/blobs/sha256:abc")
    assert r.status_code == 400 and err(r) == "DIGEST_INVALID"
    r = requests.get(f"{url}/v2/{repo}/blobs/md5:abc")
    assert r.status_code == 415 and err(r) == "UNSUPPORTED"
    wrong = "sha256:" + "0" * 64
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": wrong}, data=b"hello")
    assert r.status_code == 400 and err(r) == "DIGEST_INVALID"
    assert requests.head(f"{url}/v2/{repo}/blobs/{wrong}").status_code == 404


def test_sha512_blobs(registry):
    url, repo = registry.url, "proto/sha512"
    data = b"sha512 content"
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data)
    assert r.status_code == 201, r.text
    assert requests.get(f"{url}/v2/{repo}/blobs/{d}").content == data
    # And through a session, where the digest is only known at the end.
    loc = requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
    data2 = b"other sha512 content"
    d2 = "sha512:" + hashlib.sha512(data2).hexdigest()
    r = requests.put(f"{url}{loc}", params={"digest": d2}, data=data2)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d2
    # A manifest addressed by its sha512 digest, referencing sha512 blobs.
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": len(data)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d2, "size": len(data2)}]}
    body = json.dumps(m).encode()
    md = "sha512:" + hashlib.sha512(body).hexdigest()
    r = requests.put(f"{url}/v2/{repo}/manifests/{md}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == md, r.text
    r = requests.get(f"{url}/v2/{repo}/manifests/{md}")
    assert r.content == body and r.headers["Docker-Content-Digest"] == md


def test_chunked_upload_resume_and_cancel(registry):
    url, repo = registry.url, "proto/chunked"
    data = os.urandom(300_000)
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    assert int(r.headers["OCI-Chunk-Min-Length"]) > 0
    loc = r.headers["Location"]
    assert r.headers["Range"] == "0-0"
    r = requests.patch(f"{url}{loc}", data=data[:100_000], headers={"Content-Range": "0-99999", "Content-Type": "application/octet-stream"})
    assert r.status_code == 202 and r.headers["Range"] == "0-99999"
    # Out of order: 416, upload untouched.
    r = requests.patch(f"{url}{loc}", data=data[200_000:], headers={"Content-Range": "200000-299999"})
    assert r.status_code == 416 and err(r) == "RANGE_INVALID"
    assert r.headers["Range"] == "0-99999" and r.headers["Location"] == loc
    # Resume: ask where we are.
    r = requests.get(f"{url}{loc}")
    assert r.status_code == 204 and r.headers["Range"] == "0-99999" and r.headers["Location"] == loc
    # Streamed PATCH without Content-Range or length.
    r = requests.patch(f"{url}{loc}", data=iter([data[100_000:200_000]]))
    assert r.status_code == 202 and r.headers["Range"] == "0-199999"
    # Last chunk with the PUT.
    d = sha256(data)
    r = requests.put(f"{url}{loc}", params={"digest": d}, data=data[200_000:])
    assert r.status_code == 201 and r.headers["Location"] == f"/v2/{repo}/blobs/{d}"
    assert requests.get(f"{url}/v2/{repo}/blobs/{d}").content == data
    # The session is gone.
    assert err(requests.get(f"{url}{loc}")) == "BLOB_UPLOAD_UNKNOWN"
    # Cancel.
    loc = requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
    assert requests.delete(f"{url}{loc}").status_code == 204
    r = requests.patch(f"{url}{loc}", data=b"x")
    assert r.status_code == 404 and err(r) == "BLOB_UPLOAD_UNKNOWN"
    # Sessions belong to their repository.
    loc = requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
    other = loc.replace(repo, "proto/elsewhere")
    assert requests.get(f"{url}{other}").status_code == 404


def test_upload_put_with_wrong_digest_discards(registry):
    url, repo = registry.url, "proto/wrong"
    loc = requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
    r = requests.put(f"{url}{loc}", params={"digest": "sha256:" + "1" * 64}, data=b"abc")
    assert r.status_code == 400 and err(r) == "DIGEST_INVALID"
    r = requests.put(f"{url}{loc}", params={"digest": sha256(b"abc")})
    assert r.status_code == 404
    loc = requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
    r = requests.put(f"{url}{loc}", data=b"abc")
    assert r.status_code == 400 and err(r) == "DIGEST_INVALID"


def test_cross_repository_mount(registry):
    url = registry.url
    data = os.urandom(1000)
    d = push_blob(url, "proto/mount-src", data)
    r = requests.post(f"{url}/v2/proto/mount-dst/blobs/uploads/", params={"mount": d, "from": "proto/mount-src"})
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == d
    assert requests.get(f"{url}/v2/proto/mount-dst/blobs/{d}").content == data
    # Without `from` the blob could be another tenant's: no automatic mount,
    # the request starts a plain upload.
    r = requests.post(f"{url}/v2/proto/mount-auto/blobs/uploads/", params={"mount": d})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    # Unknown source: a regular upload session starts instead.
    r = requests.post(f"{url}/v2/proto/mount-dst2/blobs/uploads/", params={"mount": d, "from": "proto/nope"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    r = requests.post(f"{url}/v2/proto/mount-dst2/blobs/uploads/", params={"mount": "sha256:" + "2" * 64})
    assert r.status_code == 202


def test_manifest_lifecycle_and_negotiation(registry):
    url, repo = registry.url, "proto/manifests"
    m, digest = image(url, repo, tag="v1")
    r = requests.get(f"{url}/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["Content-Type"] == OCI_MANIFEST
    assert r.headers["Docker-Content-Digest"] == digest and sha256(r.content) == digest
    h = requests.head(f"{url}/v2/{repo}/manifests/{digest}")
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(r.content))
    r = requests.get(f"{url}/v2/{repo}/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404 and err(r) == "MANIFEST_UNKNOWN"
    # Manifests are content too.
    assert sha256(requests.get(f"{url}/v2/{repo}/blobs/{digest}").content) == digest
    # Re-tag, then delete the tag only.
    r, _, _ = put_manifest(url, repo, "v2", m)
    assert r.status_code == 201
    assert requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] == ["v1", "v2"]
    assert requests.delete(f"{url}/v2/{repo}/manifests/v2").status_code == 202
    assert requests.get(f"{url}/v2/{repo}/manifests/v2").status_code == 404
    assert requests.get(f"{url}/v2/{repo}/manifests/{digest}").status_code == 200
    # Delete by digest removes its tags.
    assert requests.delete(f"{url}/v2/{repo}/manifests/{digest}").status_code == 202
    assert requests.get(f"{url}/v2/{repo}/manifests/v1").status_code == 404
    assert requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] == []
    r = requests.delete(f"{url}/v2/{repo}/manifests/{digest}")
    assert r.status_code == 404 and err(r) == "MANIFEST_UNKNOWN"


def test_manifest_validation(registry):
    url, repo = registry.url, "proto/invalid"
    config = push_blob(url, repo, b"{}")
    base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2}, "layers": []}
    r, _, _ = put_manifest(url, repo, "ok", base)
    assert r.status_code == 201
    missing = dict(base, layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "3" * 64, "size": 1}])
    r, _, _ = put_manifest(url, repo, "missing", missing)
    assert r.status_code == 400 and err(r) == "MANIFEST_BLOB_UNKNOWN"
    r = requests.put(f"{url}/v2/{repo}/manifests/bad", data=b"{not json", headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and err(r) == "MANIFEST_INVALID"
    r = requests.put(f"{url}/v2/{repo}/manifests/bad", data=json.dumps(base), headers={"Content-Type": DOCKER_MANIFEST})
    assert r.status_code == 400 and err(r) == "MANIFEST_INVALID"
    r = requests.put(f"{url}/v2/{repo}/manifests/sha256:{'4' * 64}", data=json.dumps(base), headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and err(r) == "DIGEST_INVALID"
    r = requests.put(f"{url}/v2/{repo}/manifests/bad:tag!", data=json.dumps(base), headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + "5" * 64, "size": 9}]}
    r, _, _ = put_manifest(url, repo, "idx", index)
    assert r.status_code == 400 and err(r) == "MANIFEST_BLOB_UNKNOWN"
    big = dict(base, annotations={"x": "y" * (4 * 1024 * 1024)})
    r, _, _ = put_manifest(url, repo, "big", big)
    assert r.status_code == 413
    assert requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] == ["ok"]


def test_docker_schema2_and_manifest_list(registry):
    url, repo = registry.url, "proto/docker"
    config = push_blob(url, repo, b'{"architecture":"amd64","os":"linux"}')
    layer = push_blob(url, repo, b"docker layer")
    m = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 37},
         "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 12}]}
    r, md, body = put_manifest(url, repo, "amd64", m)
    assert r.status_code == 201
    lst = {"schemaVersion": 2, "mediaType": DOCKER_LIST,
           "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": md, "size": len(body), "platform": {"architecture": "amd64", "os": "linux"}}]}
    r, ld, _ = put_manifest(url, repo, "latest", lst)
    assert r.status_code == 201
    r = requests.get(f"{url}/v2/{repo}/manifests/latest", headers={"Accept": f"{DOCKER_MANIFEST}, {DOCKER_LIST}"})
    assert r.headers["Content-Type"] == DOCKER_LIST and r.headers["Docker-Content-Digest"] == ld


def test_tags_and_catalog_paging(registry):
    url, repo = registry.url, "proto/paging"
    m, _ = image(url, repo, tag="t00")
    for i in range(1, 12):
        r, _, _ = put_manifest(url, repo, f"t{i:02d}", m)
        assert r.status_code == 201
    tags = requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"]
    assert tags == sorted(tags) and len(tags) == 12
    r = requests.get(f"{url}/v2/{repo}/tags/list", params={"n": 5})
    assert r.json()["tags"] == ["t00", "t01", "t02", "t03", "t04"]
    assert r.headers["Link"] == f'</v2/{repo}/tags/list?n=5&last=t04>; rel="next"'
    r = requests.get(f"{url}/v2/{repo}/tags/list", params={"n": 5, "last": "t09"})
    assert r.json()["tags"] == ["t10", "t11"] and "Link" not in r.headers
    assert requests.get(f"{url}/v2/{repo}/tags/list", params={"n": 0}).json()["tags"] == []
    r = requests.get(f"{url}/v2/proto/never-pushed/tags/list")
    assert r.status_code == 404 and err(r) == "NAME_UNKNOWN"
    # Catalog, walked by its Link headers.
    seen, link = [], "/v2/_catalog?n=2"
    while link:
        r = requests.get(url + link)
        seen += r.json()["repositories"]
        link = r.headers.get("Link", "").split(">")[0].lstrip("<") or None
    assert seen == sorted(seen) and repo in seen and len(seen) == len(set(seen))


def test_referrers(registry):
    url, repo = registry.url, "proto/referrers"
    subject = "sha256:" + "6" * 64  # pushed before its subject exists
    config = push_blob(url, repo, b"{}")

    def artifact(kind, n):
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
             "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
             "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 10},
             "annotations": {"n": str(n)}}
        r, d, _ = put_manifest(url, repo, sha256(json.dumps(m).encode()), m)
        assert r.status_code == 201 and r.headers["OCI-Subject"] == subject
        return d

    sbom, sig = artifact("application/vnd.example.sbom", 1), artifact("application/vnd.example.sig", 2)
    r = requests.get(f"{url}/v2/{repo}/referrers/{subject}")
    assert r.status_code == 200 and r.headers["Content-Type"] == OCI_INDEX
    found = {m["digest"]: m for m in r.json()["manifests"]}
    assert set(found) == {sbom, sig}
    assert found[sbom]["artifactType"] == "application/vnd.example.sbom" and found[sbom]["annotations"] == {"n": "1"}
    r = requests.get(f"{url}/v2/{repo}/referrers/{subject}", params={"artifactType": "application/vnd.example.sig"})
    assert [m["digest"] for m in r.json()["manifests"]] == [sig]
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert requests.get(f"{url}/v2/{repo}/referrers/sha256:{'7' * 64}").json()["manifests"] == []
    assert requests.get(f"{url}/v2/{repo}/referrers/bogus").status_code == 400
    # Deleting a referrer drops it from the listing.
    assert requests.delete(f"{url}/v2/{repo}/manifests/{sig}").status_code == 202
    assert [m["digest"] for m in requests.get(f"{url}/v2/{repo}/referrers/{subject}").json()["manifests"]] == [sbom]


def test_methods_not_allowed(registry):
    r = requests.post(f"{registry.url}/v2/_catalog")
    assert r.status_code == 405 and err(r) == "UNSUPPORTED"
    assert requests.put(f"{registry.url}/v2/x/blobs/sha256:{'0' * 64}").status_code == 405


def test_concurrent_pushes_to_one_tag_stay_consistent(fresh_registry):
    from concurrent.futures import ThreadPoolExecutor

    url, repo = fresh_registry.url, "proto/race"
    config = push_blob(url, repo, b"{}")

    def push(i):
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"i": str(i)},
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2}, "layers": []}
        r, d, _ = put_manifest(url, repo, "latest", m)
        assert r.status_code == 201, r.text
        return d

    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(push, range(40)))
    current = requests.get(f"{url}/v2/{repo}/manifests/latest").headers["Docker-Content-Digest"]
    assert current in digests
    # Exactly one manifest is recorded as carrying the tag: the current one.
    db = fresh_registry.db()
    rows = db.execute("SELECT key FROM kv WHERE key LIKE ?", (f"mtag/{repo}:%",)).fetchall()
    assert rows == [(f"mtag/{repo}:{current}:latest",)]
    # So deleting any other manifest leaves the tag alone.
    other = next(d for d in digests if d != current)
    assert requests.delete(f"{url}/v2/{repo}/manifests/{other}").status_code == 202
    assert requests.get(f"{url}/v2/{repo}/manifests/latest").headers["Docker-Content-Digest"] == current


def test_blob_downloads_survive_instance_recycling(fresh_registry):
    """An instance is recycled after 128 requests; downloads it started must
    still complete (the blob stream is host-to-host, so the guest task has
    to outlive its response)."""
    url, repo = fresh_registry.url, "proto/recycle"
    data = os.urandom(2 << 20)
    d = push_blob(url, repo, data)
    s = requests.Session()
    for i in range(300):
        r = s.get(f"{url}/v2/{repo}/blobs/{d}")
        assert r.status_code == 200 and len(r.content) == len(data), f"request {i}: {len(r.content)} bytes"


def test_slow_download_outlives_idle_timeout(fresh_registry):
    """A client reading slowly for longer than the instance idle timeout
    (10 s) still gets the whole blob."""
    import time
    url, repo = fresh_registry.url, "proto/slow"
    data = os.urandom(48 << 20)
    d = push_blob(url, repo, data)
    r = requests.get(f"{url}/v2/{repo}/blobs/{d}", stream=True)
    got = bytearray()
    start = time.time()
    for chunk in r.iter_content(1 << 20):
        got += chunk
        if time.time() - start < 12:
            time.sleep(0.3)
    assert time.time() - start >= 12
    assert bytes(got) == data
