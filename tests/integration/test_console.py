"""The web console (issue 14) in a real browser: Debian's chromium, driven
by playwright-core (tests/browser/console.test.mjs), against a real Berth.
This module sets the stage — a tenant with an administrator and two plain
users, image archives made by skopeo, a multi-arch image with a referrer, a
webhook receiver — runs the browser script, and checks on the server side
what the script did through the pages. Screenshots of every page land in
target/console-screenshots/ (kept as CI output)."""

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import ON_SPIN, ROOT, Registry, image, layer_tar_gz, put_manifest, sha256, write_oci_layout
from test_webhooks import Receiver

BROWSER = ROOT / "tests" / "browser"
SHOTS = ROOT / "target" / "console-screenshots"

pytestmark = pytest.mark.skipif(ON_SPIN, reason="the console's pages are the same component on every build")


def skopeo(*args, tmp):
    env = dict(os.environ, HOME=str(tmp), XDG_RUNTIME_DIR=str(tmp))
    r = subprocess.run(["skopeo", "--tmpdir", str(tmp), *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    receiver = Receiver()
    reg = Registry(tmp / "data", extra_args=[
        "--outbound-allow", "127.0.0.1", "--var", "webhook_schedule=* * * * * *",
        "--var", "webhook_retry_base_ms=300"]).start()
    reg.iam("tenant-create", "acme", "--password", "acme-pw")
    reg.iam("user-create", "acme", "dev", "--password", "dev-pw")
    reg.iam("user-create", "acme", "nobody", "--password", "nobody-pw")
    admin = f"http://acme:acme-pw@{reg.host}"
    # A Kubernetes cluster image triggers may name (never reached here).
    r = requests.post(f"{admin}/berth/v1/tenants/acme/clusters", json={
        "id": "prod", "name": "prod", "server": "https://127.0.0.1:9", "token": "not-a-real-token",
        "organizations": ["*"], "namespaces": ["*"]})
    assert r.status_code == 201, r.text
    # An organization (made by the push) with a multi-arch image and a
    # signature referring to it.
    children = []
    for arch in ("amd64", "arm64"):
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        m, digest = image(admin, "shared/multi", layers=(arch.encode() * 100,), config=config)
        children.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                         "size": len(json.dumps(m).encode()), "platform": {"os": "linux", "architecture": arch}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}
    r, index_digest, index_bytes = put_manifest(admin, "shared/multi", "v1", index)
    assert r.status_code == 201, r.text
    sig, _ = image(admin, "shared/multi", layers=(b"signature",))
    signature = dict(sig, artifactType="application/vnd.dev.cosign.simplesigning.v1+json",
                     subject={"mediaType": index["mediaType"], "digest": index_digest, "size": len(index_bytes)})
    r, _, _ = put_manifest(admin, "shared/multi", sha256(json.dumps(signature).encode()), signature)
    assert r.status_code == 201, r.text
    # Archives as skopeo writes them: docker save's format, and an OCI layout.
    src = tmp / "src"
    write_oci_layout(src, {"v1": [layer_tar_gz({"hello.txt": b"from the console"})]})
    archives = tmp / "archives"
    archives.mkdir()
    skopeo("copy", f"oci:{src}:v1", f"docker-archive:{archives}/app.tar:team/app:v1", tmp=tmp)
    skopeo("copy", f"oci:{src}:v1", f"oci-archive:{archives}/layout.tar:v1", tmp=tmp)
    (archives / "broken.tar").write_bytes(b"this is not a tar archive" * 40)
    yield reg, receiver, archives, tmp
    reg.stop()
    receiver.server.shutdown()


def expire_sessions(reg):
    """Moves every console session's end into the past, as time would."""
    db = reg.db()
    with db:
        rows = db.execute("SELECT key, value FROM kv WHERE key LIKE 'console/session/%'").fetchall()
        for key, value in rows:
            s = json.loads(bytes(value))
            s["expires"] = 1
            db.execute("UPDATE kv SET value = ? WHERE key = ?", (json.dumps(s).encode(), key))
    return len(rows)


def test_console_in_a_browser(stage):
    reg, receiver, archives, tmp = stage
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    markers = tmp / "markers"
    markers.mkdir()
    config = {
        "url": reg.anon_url, "host": reg.host,
        "admin": ["acme", "acme-pw"], "dev": ["dev@acme", "dev-pw"], "nobody": ["nobody@acme", "nobody-pw"],
        "archives": {"docker": str(archives / "app.tar"), "oci": str(archives / "layout.tar"),
                     "broken": str(archives / "broken.tar")},
        "receiver": f"{receiver.url}/console",
        "screenshots": str(SHOTS), "markers": str(markers),
    }
    expired = []

    def expire_when_asked():
        deadline = time.time() + 600
        while time.time() < deadline:
            if (markers / "expire-now").exists():
                expired.append(expire_sessions(reg))
                (markers / "expired").write_text("ok")
                return
            time.sleep(0.1)
    watcher = threading.Thread(target=expire_when_asked, daemon=True)
    watcher.start()
    r = subprocess.run(["node", str(BROWSER / "console.test.mjs")], cwd=BROWSER, capture_output=True, text=True,
                       timeout=900, env=dict(os.environ, BERTH_CONSOLE_TEST=json.dumps(config)))
    print(r.stdout[-5000:])
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])

    auth = ("acme", "acme-pw")
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    # What the browser uploaded is in the registry, byte for byte as skopeo
    # wrote it: the layer's digest is the one in the archive.
    got = requests.get(f"{reg.anon_url}/v2/webui/app/manifests/v1", auth=auth, headers=accept)
    assert got.status_code == 200, got.text
    layers = got.json()["layers"]
    assert len(layers) == 1
    blob = requests.get(f"{reg.anon_url}/v2/webui/app/blobs/{layers[0]['digest']}", auth=auth)
    assert sha256(blob.content) == layers[0]["digest"]
    assert requests.get(f"{reg.anon_url}/v2/webui/layout/manifests/v1", auth=auth, headers=accept).status_code == 200
    # The webhook the page set up delivered the push the page made.
    deliveries = receiver.wait("/console", 1)
    assert any(b"PUSH_ARTIFACT" in body or b"webui/app" in body for _, _, body in deliveries)
    # The session ended by time, and the page noticed.
    assert expired and expired[0] >= 1
    # Changes the pages made are in the audit log, under the user who made them.
    log = requests.get(f"{reg.anon_url}/berth/v1/tenants/acme/audit", params={"user": "acme", "limit": 1000},
                       auth=auth).json()
    operations = {e["operation"] for e in log["events"]}
    assert "POST /v2/manage/namespaces" in operations and "POST /console/api/session" in operations
    # The access key the page created exists, and its secret was shown once.
    assert results["new_ak"] in json.dumps(requests.get(
        f"{reg.anon_url}/berth/v1/tenants/acme/users/acme/keys", auth=auth).json())
    # Every page was photographed.
    shots = {p.name for p in SHOTS.glob("*.png")}
    for page in ("signin", "orgs", "upload", "repo", "tree", "webhooks", "deliveries", "triggers", "aging", "immutable", "sync",
                 "gc", "usage", "audit", "keys", "users", "groups", "policies", "network", "dev-orgs", "nobody-orgs",
                 "zh-orgs", "narrow-repos"):
        assert f"{page}.png" in shots, (page, sorted(shots))


def test_session_cookie_and_csrf_without_a_browser(stage):
    """The session API's contract, by plain HTTP: the cookie's attributes,
    CSRF on every kind of change, sign-out, and refusals in each API's own
    error format."""
    reg = stage[0]
    s = requests.Session()
    r = s.post(f"{reg.anon_url}/console/api/session", json={"username": "acme", "password": "wrong"})
    assert r.status_code == 401 and r.json()["errorCode"].startswith("SVCSTG.SWR.")
    assert "set-cookie" not in {k.lower() for k in r.headers}
    for bad in [{"username": "acme"}, {"username": "acme", "password": "x", "extra": 1}]:
        r = s.post(f"{reg.anon_url}/console/api/session", json=bad)
        assert r.status_code == 400 and "invalid body" in r.json()["errorMsg"]
    r = s.post(f"{reg.anon_url}/console/api/session", json={"username": "acme", "password": "acme-pw"})
    assert r.status_code == 201, r.text
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie and "Secure" not in cookie
    csrf = r.json()["csrf"]
    assert r.json()["project_id"] and r.json()["admin"] is True
    # The secret never appears in the store: only its hash keys the session.
    cookie_id = s.cookies["berth_session"]
    assert cookie_id.encode() not in reg.stored_bytes()
    # Reads need no token; changes do, on every API.
    assert s.get(f"{reg.anon_url}/v2/manage/namespaces").status_code == 200
    r = s.post(f"{reg.anon_url}/v2/manage/namespaces", json={"namespace": "csrf-a"})
    assert r.status_code == 403 and "CSRF" in r.json()["errorMsg"]
    r = s.post(f"{reg.anon_url}/v2/manage/namespaces", json={"namespace": "csrf-a"}, headers={"X-Berth-CSRF": "0" * 64})
    assert r.status_code == 403
    r = s.post(f"{reg.anon_url}/v2/manage/namespaces", json={"namespace": "csrf-a"}, headers={"X-Berth-CSRF": csrf})
    assert r.status_code == 201, r.text
    r = s.post(f"{reg.anon_url}/v2/csrf-a/app/blobs/uploads/")
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
    r = s.post(f"{reg.anon_url}/v2/csrf-a/app/blobs/uploads/", headers={"X-Berth-CSRF": csrf})
    assert r.status_code == 202, r.text
    r = s.post(f"{reg.anon_url}/berth/v1/tenants/acme/users", json={"name": "csrf-user"})
    assert r.status_code == 403
    # Signing out needs the token too, then the cookie is worthless.
    assert s.delete(f"{reg.anon_url}/console/api/session").status_code == 403
    r = s.delete(f"{reg.anon_url}/console/api/session", headers={"X-Berth-CSRF": csrf})
    assert r.status_code == 204 and "Max-Age=0" in r.headers["Set-Cookie"]
    stale = requests.get(f"{reg.anon_url}/v2/manage/namespaces", cookies={"berth_session": cookie_id})
    assert stale.status_code == 401
    r = requests.get(f"{reg.anon_url}/v2/", cookies={"berth_session": cookie_id})
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert requests.get(f"{reg.anon_url}/console/api/session", cookies={"berth_session": cookie_id}).status_code == 401


def test_console_files_and_headers(stage):
    reg = stage[0]
    r = requests.get(f"{reg.anon_url}/console", allow_redirects=False)
    assert r.status_code == 308 and r.headers["Location"] == "/console/"
    page = requests.get(f"{reg.anon_url}/console/repos")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    js = requests.get(f"{reg.anon_url}/console/assets/app.js")
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")
    again = requests.get(f"{reg.anon_url}/console/assets/app.js", headers={"If-None-Match": js.headers["ETag"]})
    assert again.status_code == 304 and not again.content
    missing = requests.get(f"{reg.anon_url}/console/assets/nope.js")
    assert missing.status_code == 404 and missing.json()["errorCode"].startswith("SVCSTG.SWR.")
    assert requests.post(f"{reg.anon_url}/console/").status_code == 405
    assert requests.get(f"{reg.anon_url}/console/api/other").status_code == 404


def test_sessions_of_login_keys_and_changed_passwords(stage):
    """A session signed in with a docker login key administers nothing and
    lasts no longer than the key; a password changed ends the sessions
    signed in with the old one; sign-in takes JSON only."""
    import base64
    from huaweicloudsdkswr.v2 import CreateSecretRequest
    from conftest import tenant_client
    reg = stage[0]
    client, _ = tenant_client(reg, "keyco", "keyco-pw")
    secret = client.create_secret(CreateSecretRequest(projectname="berth"))
    user, password = base64.b64decode(secret.auths[reg.host].auth).decode().split(":", 1)
    s = requests.Session()
    r = s.post(f"{reg.anon_url}/console/api/session", json={"username": user, "password": password})
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["access_key_login"] is True
    expires = time.mktime(time.strptime(view["expires"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    at = time.mktime(time.strptime(secret.x_swr_expireat.split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert expires <= at + 1, (view["expires"], secret.x_swr_expireat)
    csrf = {"X-Berth-CSRF": view["csrf"]}
    # It reads and pushes as the user...
    r = s.get(f"{reg.anon_url}/v2/manage/namespaces")
    assert r.status_code == 200, r.text
    # ...but administers no users or keys, nor the network policy.
    r = s.post(f"{reg.anon_url}/berth/v1/tenants/keyco/users", json={"name": "x"}, headers=csrf)
    assert r.status_code == 403 and "login key" in r.json()["errorMsg"]
    r = s.get(f"{reg.anon_url}/berth/v1/tenants/keyco/users/keyco/keys", headers=csrf)
    assert r.status_code == 403
    # Nor does it mint login keys (a leaked one would renew itself).
    r = s.post(f"{reg.anon_url}/v2/manage/utils/secret", headers=csrf)
    assert r.status_code == 403 and "login key" in r.json()["errorMsg"]
    project = view["project_id"]
    r = s.put(f"{reg.anon_url}/v2/{project}/instances/{project}/endpoint-policy", json={"ip_list": []}, headers=csrf)
    assert r.status_code == 403 and "login key" in r.json()["errorMsg"]
    # A password change ends a password session.
    reg.iam("user-create", "keyco", "pat", "--password", "pat-pw-1")
    pat = requests.Session()
    r = pat.post(f"{reg.anon_url}/console/api/session", json={"username": "pat@keyco", "password": "pat-pw-1"})
    assert r.status_code == 201
    assert pat.get(f"{reg.anon_url}/v2/manage/namespaces").status_code == 200
    r = requests.patch(f"{reg.anon_url}/berth/v1/tenants/keyco/users/pat", json={"password": "pat-pw-2"},
                       auth=("keyco", "keyco-pw"))
    assert r.status_code == 200, r.text
    r = pat.get(f"{reg.anon_url}/v2/manage/namespaces")
    assert r.status_code == 401 and "password changed" in r.json()["errorMsg"]
    # Sign-in is JSON only (no cross-site form can sign a browser in), and
    # its answers are never cached.
    for content_type in ("text/plain", "application/jsonx", "application/x-www-form-urlencoded"):
        r = requests.post(f"{reg.anon_url}/console/api/session", data='{"username":"pat@keyco","password":"pat-pw-2"}',
                          headers={"Content-Type": content_type})
        assert r.status_code == 400 and "JSON" in r.json()["errorMsg"], content_type
    r = requests.post(f"{reg.anon_url}/console/api/session", json={"username": "pat@keyco", "password": "pat-pw-2"})
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
