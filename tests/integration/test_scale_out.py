"""Two `berth serve` hosts serving one registry: metadata in one PostgreSQL
database, blobs and uploads in one S3 bucket (in the scale-out pass; one
shared directory in the PostgreSQL one), one set of keys (a runtime
config both read). Pushes on one are pulled from the other, an
upload started on one finishes on the other, a token of one is good on
the other, a host killed with kill -9 in the middle of an upload leaves
the other serving and the upload resumable there, and scheduled jobs
ticked on both at once run once. Runs in the passes of `make test` on
PostgreSQL (see conftest.py)."""

import hashlib
import os
import subprocess
import threading
import time

import pytest
import requests

from conftest import (ADMIN, ON_S3, Registry, image, postgres_database, s3_prefix, s3_settings, sha256,
                      skopeo_push, tenant_client)

MIB = 1 << 20


def blob_store(base):
    """The hosts' shared blob store: a bucket prefix, or a directory."""
    if ON_S3:
        endpoint, key, secret, bucket = s3_settings()
        return ('[blob_store.default]\ntype = "s3"\nregion = "garage"\n'
                f'endpoint = "{endpoint}"\nbucket = "{bucket}"\naccess_key_id = "{key}"\n'
                f'secret_access_key = "{secret}"\nprefix = "{s3_prefix(base / "shared", fresh=True)}"\n')
    return f'[blob_store.default]\ntype = "fs"\npath = "{base / "blobs"}"\n'


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale-out")
    config = base / "runtime-config.toml"
    config.write_text(
        "[metadata_store.default]\n"
        f'type = "postgres"\nurl = "{postgres_database(base / "shared", fresh=True)}"\npool_size = 8\n'
        f"{blob_store(base)}"
        "[credentials]\n"
        f'keys_dir = "{base / "keys"}"\n')
    config.chmod(0o600)
    a = Registry(base / "a", runtime_config=config).start()
    b = Registry(base / "b", runtime_config=config).start()
    tenant_client(a, "acme", "acme-pw", ["team"])
    yield a, b, config
    for h in (a, b):
        h.stop()


def raw_digest(host, ref, tmp_path):
    r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "acme:acme-pw",
                        f"docker://{host}/{ref}"], capture_output=True, timeout=120,
                       env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stderr.decode()
    return "sha256:" + hashlib.sha256(r.stdout).hexdigest()


def test_a_push_on_one_host_is_pulled_from_the_other(hosts, tmp_path):
    a, b, _ = hosts
    p = skopeo_push(a.host, "acme:acme-pw", "team/app:v1", tmp_path, content=b"pushed to host a")
    assert p.returncode == 0, p.stderr
    assert raw_digest(b.host, "team/app:v1", tmp_path) == raw_digest(a.host, "team/app:v1", tmp_path)
    r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", "acme:acme-pw",
                        f"docker://{b.host}/team/app:v1", f"oci:{tmp_path / 'pulled'}:v1"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    # The tag list and catalog agree at once on both.
    for h in (a, b):
        tags = requests.get(f"http://{h.host}/v2/team/app/tags/list", auth=("acme", "acme-pw")).json()["tags"]
        assert tags == ["v1"]


def test_an_upload_started_on_one_host_finishes_on_the_other(hosts):
    a, b, _ = hosts
    data = os.urandom(3 * MIB)
    loc = requests.post(f"http://{a.host}/v2/team/spanning/blobs/uploads/", auth=("acme", "acme-pw")).headers["Location"]
    r = requests.patch(f"http://{a.host}{loc}", data=data[:MIB], auth=("acme", "acme-pw"),
                       headers={"Content-Range": f"0-{MIB - 1}", "Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    # Host b knows where the session stands, takes the next chunk and closes it.
    r = requests.get(f"http://{b.host}{loc}", auth=("acme", "acme-pw"))
    assert r.status_code == 204 and r.headers["Range"] == f"0-{MIB - 1}", r.headers
    r = requests.patch(f"http://{b.host}{loc}", data=data[MIB:], auth=("acme", "acme-pw"),
                       headers={"Content-Range": f"{MIB}-{len(data) - 1}", "Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    r = requests.put(f"http://{b.host}{r.headers['Location']}", params={"digest": sha256(data)}, auth=("acme", "acme-pw"))
    assert r.status_code == 201, r.text
    got = requests.get(f"http://{a.host}/v2/team/spanning/blobs/{sha256(data)}", auth=("acme", "acme-pw"))
    assert got.status_code == 200 and got.content == data


def test_a_token_of_one_host_is_good_on_the_other(hosts):
    a, b, _ = hosts
    image(f"http://acme:acme-pw@{a.host}", "team/tokens", tag="v1")
    token = requests.get(f"http://{a.host}/service/token", auth=("acme", "acme-pw"),
                         params={"service": "berth", "scope": "repository:team/tokens:pull"}).json()["token"]
    r = requests.get(f"http://{b.host}/v2/team/tokens/manifests/v1", headers={
        "Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text


def test_a_host_killed_mid_upload_leaves_the_other_serving_and_the_upload_resumable(hosts):
    a, b, config = hosts
    data = os.urandom(64 * MIB)
    auth = ("acme", "acme-pw")
    loc = requests.post(f"http://{a.host}/v2/team/killed/blobs/uploads/", auth=auth).headers["Location"]
    # A first chunk, acknowledged; then one streamed slowly, cut by the kill.
    r = requests.patch(f"http://{a.host}{loc}", data=data[:MIB], auth=auth,
                       headers={"Content-Range": f"0-{MIB - 1}", "Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    sent = threading.Event()

    def slow():
        for i in range(MIB, len(data), MIB):
            if i >= 8 * MIB:
                sent.set()
            time.sleep(0.05)
            yield data[i:i + MIB]

    def patch():
        try:
            requests.patch(f"http://{a.host}{loc}", data=slow(), auth=auth,
                           headers={"Content-Type": "application/octet-stream"}, timeout=120)
        except requests.RequestException:
            pass  # the host dies under it
    t = threading.Thread(target=patch, daemon=True)
    t.start()
    assert sent.wait(60)
    a.kill()
    t.join(30)
    try:
        # Host b serves on: pulls, and a whole push.
        r = requests.get(f"http://{b.host}/v2/team/app/manifests/v1", auth=auth,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200, r.text
        image(f"http://acme:acme-pw@{b.host}", "team/while-a-is-down", tag="v1")
        # The upload goes on there from what host a received.
        r = requests.get(f"http://{b.host}{loc}", auth=auth)
        assert r.status_code == 204, r.text
        offset = int(r.headers["Range"].split("-")[1]) + 1
        # What host a acknowledged stays. A directory also keeps what reached
        # the disk of the cut request; a bucket only whole requests (an
        # append is one object, complete or absent).
        if ON_S3:
            assert offset == MIB, offset
        else:
            assert MIB <= offset < len(data), offset
        r = requests.patch(f"http://{b.host}{loc}", data=data[offset:], auth=auth,
                           headers={"Content-Range": f"{offset}-{len(data) - 1}",
                                    "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        r = requests.put(f"http://{b.host}{r.headers['Location']}", params={"digest": sha256(data)}, auth=auth)
        assert r.status_code == 201, r.text
    finally:
        a.start()
    got = requests.get(f"http://{a.host}/v2/team/killed/blobs/{sha256(data)}", auth=auth)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha256(data)[7:]


@pytest.mark.parametrize("job", ["gc", "aging", "retention", "replication", "webhooks"])
def test_a_job_ticked_on_both_hosts_at_once_runs_once(hosts, job):
    """Ticks sent to both hosts at the same moment: one runs, the other is
    refused with 409 naming the run that holds the lease — a run of the
    other host (the lease is in the shared metadata)."""
    a, b, _ = hosts
    # Quick jobs (nothing to do) often finish before the other host's tick
    # lands, so the overlap is retried for up to a minute of tries.
    deadline = time.monotonic() + 60
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        barrier = threading.Barrier(4)
        answers = []

        def tick(h):
            barrier.wait()
            r = requests.post(f"http://{h.host}/berth/jobs/{job}/tick", auth=ADMIN, timeout=120)
            answers.append((h.port, r))
        threads = [threading.Thread(target=tick, args=(h,)) for h in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.status_code in (200, 409) for _, r in answers), [(r.status_code, r.text) for _, r in answers]
        ran = {r.json()["run"]: port for port, r in answers if r.status_code == 200}
        assert ran, "no tick ran"
        for port, r in answers:
            message = r.json().get("errorMsg", "") if r.status_code == 409 else ""
            assert r.status_code == 200 or "already running" in message, message
            # Refused on one host for a run of the other (a refusal from
            # a lease taken between read and write names no run).
            if "(run " in message:
                holder = message.split("(run ", 1)[1].split(" ", 1)[0]
                if ran.get(holder, port) != port:
                    return
    pytest.fail(f"in {tries} tries no tick of {job} was refused for the other host's run")


@pytest.mark.skipif(not ON_S3, reason="presigned redirects need the S3 blob store (the scale-out pass runs it)")
def test_blob_gets_redirect_to_presigned_urls_when_configured(hosts, tmp_path):
    """With `redirect_seconds`, blob GETs answer 307 to a presigned URL of
    the bucket, which skopeo follows; HEADs and manifests stay local."""
    a, _, config = hosts
    redirecting = tmp_path / "redirect.toml"
    redirecting.write_text(config.read_text().replace("[credentials]", "redirect_seconds = 60\n[credentials]"))
    redirecting.chmod(0o600)
    c = Registry(tmp_path / "c", runtime_config=redirecting).start()
    try:
        p = skopeo_push(a.host, "acme:acme-pw", "team/redirected:v1", tmp_path, content=b"served by the bucket")
        assert p.returncode == 0, p.stderr
        auth = ("acme", "acme-pw")
        m = requests.get(f"http://{c.host}/v2/team/redirected/manifests/v1", auth=auth,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert m.status_code == 200, m.text
        layer = m.json()["layers"][0]["digest"]
        url = f"http://{c.host}/v2/team/redirected/blobs/{layer}"
        assert requests.head(url, auth=auth).status_code == 200
        r = requests.get(url, auth=auth, allow_redirects=False)
        assert r.status_code == 307, r.text
        location = r.headers["Location"]
        assert location.startswith("http://127.0.0.1:3900/") and "X-Amz-Signature=" in location, location
        got = requests.get(location)
        assert got.status_code == 200 and sha256(got.content) == layer
        # Without credentials, no redirect: the URL is given only to whom may pull.
        assert requests.get(url, allow_redirects=False).status_code == 401
        r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", "acme:acme-pw",
                            f"docker://{c.host}/team/redirected:v1", f"oci:{tmp_path / 'pulled'}:v1"],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "pulled" / "blobs" / "sha256" / layer.split(":")[1]).exists()
    finally:
        c.stop()
