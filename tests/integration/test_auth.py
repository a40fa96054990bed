"""Registry authentication and authorization: the Docker token flow, Basic
credentials, SWR long-term login with an AK/SK, tenant isolation, system
policies, organization quotas, and the audit trail of pushes and deletes."""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import ADMIN, Registry, image, layer_tar_gz, skopeo_push, write_oci_layout


def err(r):
    return r.json()["errors"][0]["code"]


def token(reg, scope, auth=None):
    r = requests.get(f"{reg.anon_url}/service/token", params={"service": "berth", "scope": scope}, auth=auth)
    return r


def bearer(t):
    return {"Authorization": f"Bearer {t}"}


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    """A registry with a second tenant `acme`, an IAM user per system policy
    and an access key for the acme account."""
    reg = Registry(tmp_path_factory.mktemp("auth") / "data").start()
    acme = reg.iam("tenant-create", "acme", "--password", "acme-pw")
    for user, policy in [("reader", "SWR ReadOnlyAccess"), ("operator", "SWR OperateAccess"), ("nobody", None)]:
        args = ["user-create", "acme", user, "--password", f"{user}-pw"]
        if policy:
            args += ["--policy", policy]
        reg.iam(*args)
    key = reg.iam("key-create", "acme", "acme")
    yield reg, acme, key
    reg.stop()


def test_challenge_and_token_flow(tenants):
    reg, _, _ = tenants
    r = requests.get(f"{reg.anon_url}/v2/")
    assert r.status_code == 401 and err(r) == "UNAUTHORIZED"
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="http://{reg.host}/service/token",service="berth"'
    # A manifest GET names the scope it needs.
    r = requests.get(f"{reg.anon_url}/v2/proto/x/manifests/v1")
    assert r.status_code == 401 and 'scope="repository:proto/x:pull"' in r.headers["WWW-Authenticate"]
    r = requests.post(f"{reg.anon_url}/v2/proto/x/blobs/uploads/")
    assert 'scope="repository:proto/x:pull,push"' in r.headers["WWW-Authenticate"]

    assert token(reg, "repository:admin-ns/app:pull,push", auth=("admin", "wrong")).status_code == 401
    t = token(reg, "repository:admin-ns/app:pull,push", auth=ADMIN)
    assert t.status_code == 200 and t.json()["expires_in"] == 300
    tok = t.json()["token"]
    # The token carries exactly the granted access.
    claims = json.loads(__import__("base64").urlsafe_b64decode(tok.split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": "admin-ns/app", "actions": ["pull", "push"], "basis": "own"}]
    assert requests.get(f"{reg.anon_url}/v2/", headers=bearer(tok)).status_code == 200
    _, digest = image(reg.url, "admin-ns/app", tag="v1")
    r = requests.get(f"{reg.anon_url}/v2/admin-ns/app/manifests/v1", headers=bearer(tok))
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    # Not in the token: 401 insufficient_scope (clients fetch a new token).
    r = requests.delete(f"{reg.anon_url}/v2/admin-ns/app/manifests/{digest}", headers=bearer(tok))
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    r = requests.get(f"{reg.anon_url}/v2/admin-ns/other/manifests/v1", headers=bearer(tok))
    assert r.status_code == 401
    # Forged or tampered tokens are refused.
    r = requests.get(f"{reg.anon_url}/v2/admin-ns/app/manifests/v1", headers=bearer(tok[:-2] + "xx"))
    assert r.status_code == 401 and err(r) == "UNAUTHORIZED"
    # Without credentials the token endpoint grants nothing private.
    anon = token(reg, "repository:admin-ns/app:pull").json()["token"]
    assert requests.get(f"{reg.anon_url}/v2/admin-ns/app/manifests/v1", headers=bearer(anon)).status_code == 401
    # Malformed token requests get clear errors.
    r = token(reg, "bogus-scope", auth=ADMIN)
    assert r.status_code == 400 and "invalid scope" in r.json()["errors"][0]["message"]
    r = requests.post(f"{reg.anon_url}/service/token", data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert r.status_code == 400 and "grant_type=password" in r.json()["errors"][0]["message"]
    r = requests.get(f"{reg.anon_url}/service/token", headers={"Authorization": "Bearer abc"})
    assert r.status_code == 401
    # The OAuth2 password grant (containerd) works too.
    r = requests.post(f"{reg.anon_url}/service/token", data={"grant_type": "password", "username": "admin",
                      "password": ADMIN[1], "scope": "repository:admin-ns/app:pull", "service": "berth"})
    assert r.status_code == 200
    assert requests.get(f"{reg.anon_url}/v2/admin-ns/app/manifests/v1", headers=bearer(r.json()["access_token"])).status_code == 200


def test_tenants_are_isolated(tenants):
    reg, _, _ = tenants
    acme_url = f"http://acme:acme-pw@{reg.host}"
    _, digest = image(acme_url, "acme-ns/app", tag="v1")
    image(reg.url, "admin-only/app", tag="v1")
    # The admin tenant's administrator sees nothing of acme's, and back.
    r = requests.get(f"{reg.url}/v2/acme-ns/app/manifests/v1")
    assert r.status_code == 403 and err(r) == "DENIED"
    r = requests.get(f"{acme_url}/v2/admin-only/app/manifests/v1")
    assert r.status_code == 403
    claims = json.loads(__import__("base64").urlsafe_b64decode(
        token(reg, "repository:acme-ns/app:pull,push,delete", auth=ADMIN).json()["token"].split(".")[1] + "=="))
    assert claims["access"][0]["actions"] == []
    # Pushing into another tenant's organization is refused.
    r = requests.post(f"{acme_url}/v2/admin-only/sneaky/blobs/uploads/")
    assert r.status_code == 403
    # Mounting another tenant's blob becomes a plain upload (no leak).
    r = requests.post(f"{reg.url}/v2/admin-only/app/blobs/uploads/", params={"mount": digest, "from": "acme-ns/app"})
    assert r.status_code == 202
    # Each catalog lists its own tenant's repositories.
    mine = requests.get(f"{acme_url}/v2/_catalog").json()["repositories"]
    assert mine == ["acme-ns/app"]
    assert "acme-ns/app" not in requests.get(f"{reg.url}/v2/_catalog").json()["repositories"]
    assert requests.get(f"{reg.anon_url}/v2/_catalog").status_code == 401


def test_system_policies(tenants):
    reg, _, _ = tenants
    acme_url = f"http://acme:acme-pw@{reg.host}"
    image(acme_url, "acme-pol/app", tag="v1")
    url = lambda u: f"http://{u}%40acme:{u}-pw@{reg.host}"
    # ReadOnlyAccess: pull, no push, no delete.
    assert requests.get(f"{url('reader')}/v2/acme-pol/app/manifests/v1").status_code == 200
    r = requests.post(f"{url('reader')}/v2/acme-pol/app/blobs/uploads/")
    assert r.status_code == 403 and err(r) == "DENIED"
    assert requests.delete(f"{url('reader')}/v2/acme-pol/app/manifests/v1").status_code == 403
    # OperateAccess: push and delete.
    _, d = image(url("operator"), "acme-pol/app", layers=(b"op",), tag="v2")
    assert requests.delete(f"{url('operator')}/v2/acme-pol/app/manifests/{d}").status_code == 202
    # No policy: nothing.
    assert requests.get(f"{url('nobody')}/v2/acme-pol/app/manifests/v1").status_code == 403
    assert requests.get(f"http://reader%40acme:bad@{reg.host}/v2/acme-pol/app/manifests/v1").status_code == 401


def test_long_term_login_with_access_key(tenants, tmp_path):
    reg, _, key = tenants
    ak, sk = key["ak"], key["sk"]
    user = f"cn-north-4@{ak}"
    password = hmac.new(sk.encode(), ak.encode(), hashlib.sha256).hexdigest()
    r = skopeo_push(reg.host, f"{user}:{password}", "acme-keys/app:v1", tmp_path)
    assert r.returncode == 0, r.stderr
    assert requests.get(f"http://acme:acme-pw@{reg.host}/v2/acme-keys/app/tags/list").json()["tags"] == ["v1"]
    # A wrong password, then a disabled key, are refused.
    assert token(reg, "repository:acme-keys/app:pull", auth=(user, "0" * 64)).status_code == 401
    reg.iam("key-set", ak, "--active", "false")
    assert token(reg, "repository:acme-keys/app:pull", auth=(user, password)).status_code == 401
    reg.iam("key-set", ak, "--active", "true")
    assert token(reg, "repository:acme-keys/app:pull", auth=(user, password)).status_code == 200


def test_pushes_and_deletes_are_audited(tenants):
    reg, _, _ = tenants
    acme_url = f"http://acme:acme-pw@{reg.host}"
    _, d = image(acme_url, "acme-audit/app", tag="v1")
    assert requests.delete(f"{acme_url}/v2/acme-audit/app/manifests/{d}").status_code == 202
    db = reg.db()
    events = [json.loads(v) for (v,) in db.execute("SELECT value FROM kv WHERE key LIKE 'audit/acme/%' ORDER BY key")]
    ops = [e["operation"] for e in events if "acme-audit" in e["operation"]]
    assert ops[-1] == f"delete manifest acme-audit/app:{d}"
    assert "push manifest acme-audit/app:v1" in ops
    assert sum(o.startswith("push blob acme-audit/app@") for o in ops) == 2
    last = events[-1]
    assert last["user"] == "acme" and last["tenant"] == "acme" and last["status"] == 202
    assert last["source"].startswith("127.0.0.1:")


def test_organization_quota(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--var", "namespace_quota=2"]).start()
    try:
        image(reg.url, "one/app", tag="v1")
        image(reg.url, "two/app", tag="v1")
        r = requests.post(f"{reg.url}/v2/three/app/blobs/uploads/")
        assert r.status_code == 403 and "organization" in r.json()["errors"][0]["message"]
        # Existing organizations still take pushes.
        image(reg.url, "one/other", tag="v1")
        # Racing first pushes into new organizations: exactly the quota wins.
        reg.iam("user-create", "admin", "racer", "--password", "racer-pw", "--policy", "SWR FullAccess")
        url = f"http://racer%40admin:racer-pw@{reg.host}"
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda i: requests.post(f"{url}/v2/race-{i}/app/blobs/uploads/").status_code,
                                  range(12)))
        assert sorted(codes) == [202, 202] + [403] * 10, codes
    finally:
        reg.stop()


@pytest.mark.parametrize("kind", ["password", "long-term", "temporary"])
def test_podman_and_oras_with_each_credential_kind(tenants, tmp_path, kind):
    """podman pushes and oras pulls with a user's password, SWR's long-term
    AK login and a temporary login key."""
    import base64
    import oras.client
    reg, _, key = tenants
    if kind == "password":
        user, password = "operator@acme", "operator-pw"
    elif kind == "long-term":
        user = f"cn-north-4@{key['ak']}"
        password = hmac.new(key["sk"].encode(), key["ak"].encode(), hashlib.sha256).hexdigest()
    else:
        # What POST /v2/manage/utils/secret hands out, fetched here with the
        # account's own key through a signed call (see test_swr_api.py).
        from huaweicloudsdkcore.auth.credentials import BasicCredentials
        from huaweicloudsdkswr.v2 import CreateSecretRequest, SwrClient
        tenant = f"t{os.urandom(3).hex()}"
        acme = reg.iam("tenant-create", tenant, "--password", "pw")
        k = reg.iam("key-create", tenant, tenant)
        c = SwrClient.new_builder().with_credentials(BasicCredentials(k["ak"], k["sk"], acme["project_id"])) \
            .with_endpoints([reg.anon_url]).build()
        user, password = base64.b64decode(c.create_secret(CreateSecretRequest()).auths[reg.host].auth).decode().split(":", 1)
    # (A first push creates the organization.)
    repo = f"cred-{kind}/app" if kind != "temporary" else f"{tenant}-org/app"
    src = tmp_path / "src"
    write_oci_layout(src, {"v1": [layer_tar_gz({"c.txt": f"pushed with {kind}".encode()})]})
    # podman's runroot holds sockets: keep its path short.
    root, runroot = tmp_path / "root", Path("/tmp") / f"prr-{kind}-{reg.port}"
    base = ["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs",
            "--events-backend", "file", "--cgroup-manager", "cgroupfs", "--tmpdir", str(tmp_path)]
    env = dict(os.environ, HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    run = lambda cmd: subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    try:
        loaded = run([*base, "pull", f"oci:{src}:v1"]).stdout.strip().splitlines()[-1]
        ref = f"{reg.host}/{repo}:v1"
        assert run([*base, "tag", loaded, ref]).returncode == 0
        r = run([*base, "login", "--tls-verify=false", "-u", user, "-p", password, reg.host])
        assert r.returncode == 0, r.stderr
        r = run([*base, "push", "--tls-verify=false", ref])
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run([*base, "system", "reset", "-f"], capture_output=True, env=env)
        shutil.rmtree(runroot, ignore_errors=True)
    client = oras.client.OrasClient(hostname=reg.host, insecure=True)
    client.auth.set_basic_auth(user, password)
    manifest = client.get_manifest(ref)
    assert manifest["layers"][0]["size"] > 0
    wrong = password[:-1] + ("0" if password[-1] != "0" else "1")
    r = requests.get(f"{reg.anon_url}/service/token", params={"scope": f"repository:{repo}:pull"}, auth=(user, wrong))
    assert r.status_code == 401
