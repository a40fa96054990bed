"""Hardening (issue 9): what an attacker, a careless client or a broken
network does to Berth. Each test is a case that failed before its fix:
tokens outliving the decision they were issued on, signatures that did not
cover the body, replayed signed changes, world-readable files, answers lost
on the wire, truncated bodies taken as complete, connections held forever,
index entries judged wrongly, and the protocol details around them."""

import base64
import hashlib
import hmac
import json
import os
import socket
import stat
import threading
import time

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateNamespaceRequest,
    CreateSecretRequest,
    CreateNamespaceRequestBody,
    CreateRepoDomainsRequest,
    CreateRepoDomainsRequestBody,
    DeleteNamespacesRequest,
    DeleteRepoDomainsRequest,
    SwrClient,
    UpdateRepoRequest,
    UpdateRepoRequestBody,
)

from conftest import ADMIN, BACKEND, Registry, image, push_blob, put_manifest, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def err(r):
    return r.json()["errors"][0]["code"]


def token(reg, scope, auth=None):
    return requests.get(f"{reg.anon_url}/service/token", params={"service": "berth", "scope": scope}, auth=auth)


def bearer(t):
    return {"Authorization": f"Bearer {t}"}


def claims(tok):
    return json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """A registry with tenants `alpha` and `beta`, each with an account
    password and an access key."""
    reg = Registry(tmp_path_factory.mktemp("hardening") / "data").start()
    keys = {}
    for t in ("alpha", "beta"):
        reg.iam("tenant-create", t, "--password", f"{t}-pw")
        keys[t] = reg.iam("key-create", t, t)
    yield reg, keys
    reg.stop()


# 1. Security ---------------------------------------------------------------

def test_a_token_does_not_survive_another_tenant_creating_the_organization(two):
    reg, _ = two
    # beta asks while `later` does not exist: all three actions, as its own.
    t = token(reg, "repository:later/app:pull,push,delete", auth=("beta", "beta-pw"))
    assert t.status_code == 200
    tok = t.json()["token"]
    assert claims(tok)["access"][0]["actions"] == ["pull", "push", "delete"]
    # alpha then creates `later` with its first push.
    alpha = f"http://alpha:alpha-pw@{reg.host}"
    manifest, digest = image(alpha, "later/app", layers=[b"alpha's secret layer"], tag="v1")
    layer = manifest["layers"][0]["digest"]
    for method, path in [("GET", "manifests/v1"), ("HEAD", "manifests/v1"), ("GET", f"blobs/{layer}"),
                         ("GET", "tags/list"), ("DELETE", f"blobs/{layer}"), ("DELETE", f"manifests/{digest}"),
                         ("GET", f"referrers/{digest}")]:
        r = requests.request(method, f"{reg.anon_url}/v2/later/app/{path}", headers=bearer(tok))
        assert r.status_code == 401, (method, path, r.status_code)
    r = requests.post(f"{reg.anon_url}/v2/later/app/blobs/uploads/", headers=bearer(tok))
    assert r.status_code == 401
    # Nothing of alpha's was touched.
    assert requests.get(f"{alpha}/v2/later/app/blobs/{layer}").content == b"alpha's secret layer"
    assert requests.get(f"{alpha}/v2/later/app/manifests/v1").status_code == 200
    # A token beta asks for now grants nothing there.
    assert claims(token(reg, "repository:later/app:pull,push,delete",
                        auth=("beta", "beta-pw")).json()["token"])["access"][0]["actions"] == []


def swr(reg, key):
    return SwrClient.new_builder().with_credentials(
        BasicCredentials(key["ak"], key["sk"])).with_endpoints([reg.anon_url]).build()


def test_a_token_for_a_public_repository_stops_when_it_turns_private(two):
    reg, keys = two
    alpha = f"http://alpha:alpha-pw@{reg.host}"
    image(alpha, "pubthen/app", tag="v1")
    client = swr(reg, keys["alpha"])
    client.update_repo(UpdateRepoRequest(namespace="pubthen", repository="app",
                                         body=UpdateRepoRequestBody(is_public=True)))
    anon = token(reg, "repository:pubthen/app:pull").json()["token"]
    beta = token(reg, "repository:pubthen/app:pull", auth=("beta", "beta-pw")).json()["token"]
    assert claims(beta)["access"][0]["basis"] == "public"
    for tok in (anon, beta):
        assert requests.get(f"{reg.anon_url}/v2/pubthen/app/manifests/v1", headers=bearer(tok)).status_code == 200
    client.update_repo(UpdateRepoRequest(namespace="pubthen", repository="app",
                                         body=UpdateRepoRequestBody(is_public=False)))
    for tok in (anon, beta):
        assert requests.get(f"{reg.anon_url}/v2/pubthen/app/manifests/v1", headers=bearer(tok)).status_code == 401


def test_a_token_for_a_shared_repository_stops_when_the_share_ends(two):
    reg, keys = two
    image(f"http://alpha:alpha-pw@{reg.host}", "shared/app", tag="v1")
    client = swr(reg, keys["alpha"])
    client.create_repo_domains(CreateRepoDomainsRequest(namespace="shared", repository="app", body=CreateRepoDomainsRequestBody(
        access_domain="beta", permit="read", deadline="forever")))
    tok = token(reg, "repository:shared/app:pull,push", auth=("beta", "beta-pw")).json()["token"]
    assert claims(tok)["access"] == [{"type": "repository", "name": "shared/app", "actions": ["pull"], "basis": "shared"}]
    assert requests.get(f"{reg.anon_url}/v2/shared/app/manifests/v1", headers=bearer(tok)).status_code == 200
    client.delete_repo_domains(DeleteRepoDomainsRequest(namespace="shared", repository="app", access_domain="beta"))
    assert requests.get(f"{reg.anon_url}/v2/shared/app/manifests/v1", headers=bearer(tok)).status_code == 401


def test_a_deleted_organization_name_is_held_for_its_tenant(two):
    """Instances trust a cached owner for a few seconds; meanwhile no other
    tenant can take a name its owner just released."""
    reg, keys = two
    alpha, beta = swr(reg, keys["alpha"]), swr(reg, keys["beta"])
    alpha.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="released")))
    tok = token(reg, "repository:released/app:pull,push", auth=("alpha", "alpha-pw")).json()["token"]
    assert requests.get(f"{reg.anon_url}/v2/released/app/tags/list", headers=bearer(tok)).status_code == 404
    alpha.delete_namespaces(DeleteNamespacesRequest(namespace="released"))
    with pytest.raises(ClientRequestException) as e:
        beta.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="released")))
    assert e.value.status_code == 409 and "moments ago" in e.value.error_msg
    r = requests.post(f"http://beta:beta-pw@{reg.host}/v2/released/app/blobs/uploads/")
    assert r.status_code == 403
    # Its own tenant may take it back at once (a second later than its
    # first, byte-identical request, which would be refused as a replay).
    time.sleep(1.1)
    alpha.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="released")))


def test_a_token_lives_as_long_as_the_access_key_it_came_from(two):
    reg, _ = two
    key = reg.iam("key-create", "alpha", "alpha")
    password = hmac.new(key["sk"].encode(), key["ak"].encode(), hashlib.sha256).hexdigest()
    image(f"http://alpha:alpha-pw@{reg.host}", "keyed/app", tag="v1")
    tok = token(reg, "repository:keyed/app:pull", auth=(f"berth@{key['ak']}", password)).json()["token"]
    assert requests.get(f"{reg.anon_url}/v2/keyed/app/manifests/v1", headers=bearer(tok)).status_code == 200
    reg.iam("key-set", key["ak"], "--active", "false")
    time.sleep(6)
    assert requests.get(f"{reg.anon_url}/v2/keyed/app/manifests/v1", headers=bearer(tok)).status_code == 401
    reg.iam("key-delete", key["ak"])


def test_docker_login_keys_do_not_administer(two):
    """A leaked docker login (long-term or temporary) opens registries, not
    the admin API: it cannot mint keys or change the password."""
    reg, keys = two
    key = keys["alpha"]
    long_term = hmac.new(key["sk"].encode(), key["ak"].encode(), hashlib.sha256).hexdigest()
    secret = swr(reg, key).create_secret(CreateSecretRequest()).auths
    temp_user, temp_password = base64.b64decode(list(secret.values())[0].auth).decode().split(":", 1)
    for login in [(f"berth@{key['ak']}", long_term), (temp_user, temp_password)]:
        assert requests.get(f"{reg.anon_url}/v2/", auth=login).status_code == 200
        r = requests.post(f"{reg.anon_url}/berth/v1/tenants/alpha/users/alpha/keys", auth=login)
        assert r.status_code == 401, login
        r = requests.patch(f"{reg.anon_url}/berth/v1/tenants/alpha/users/alpha", auth=login, json={"password": "Hijacked-1!"})
        assert r.status_code == 401
    assert requests.get(f"{reg.anon_url}/berth/v1/whoami", auth=("alpha", "alpha-pw")).status_code == 200


def test_an_upload_finished_after_its_organization_went_stays_with_its_tenant(two):
    reg, keys = two
    alpha, beta = f"http://alpha:alpha-pw@{reg.host}", f"http://beta:beta-pw@{reg.host}"
    loc = requests.post(f"{alpha}/v2/orgless/app/blobs/uploads/").headers["Location"]
    swr(reg, keys["alpha"]).delete_namespaces(DeleteNamespacesRequest(namespace="orgless"))
    data = b"alpha's bytes, uploaded while the organization went"
    r = requests.put(f"{alpha}{loc}", params={"digest": sha256(data)}, data=data)
    assert r.status_code == 201
    # Linked under an organization alpha owns again, never under no owner.
    assert requests.get(f"{beta}/v2/orgless/app/blobs/{sha256(data)}").status_code == 403
    r = requests.post(f"{beta}/v2/bown/app/blobs/uploads/", params={"mount": sha256(data), "from": "orgless/app"})
    assert r.status_code == 202
    assert requests.get(f"{alpha}/v2/orgless/app/blobs/{sha256(data)}").content == data


def test_other_tenants_do_not_see_grants_or_shares(two):
    reg, keys = two
    alpha = f"http://alpha:alpha-pw@{reg.host}"
    image(alpha, "opened/app", tag="v1")
    client = swr(reg, keys["alpha"])
    client.update_repo(UpdateRepoRequest(namespace="opened", repository="app", body=UpdateRepoRequestBody(is_public=True)))
    client.create_repo_domains(CreateRepoDomainsRequest(namespace="opened", repository="app", body=CreateRepoDomainsRequestBody(
        access_domain="beta", permit="read", deadline="forever", description="private note")))
    for path in ["/v2/manage/namespaces/opened/repos/app/access",
                 "/v2/manage/namespaces/opened/repositories/app/access-domains"]:
        h, _ = signed(reg, keys["alpha"], "GET", path, None)
        assert requests.get(f"{reg.anon_url}{path}", headers=h).status_code == 200
        h, _ = signed(reg, keys["beta"], "GET", path, None)
        assert requests.get(f"{reg.anon_url}{path}", headers=h).status_code == 404, path
    # The tenant it is shared with may see its own share.
    path = "/v2/manage/namespaces/opened/repositories/app/access-domains/beta"
    h, _ = signed(reg, keys["beta"], "GET", path, None)
    assert requests.get(f"{reg.anon_url}{path}", headers=h).status_code == 200


def test_cleartext_is_http_1_only(two):
    reg, _ = two
    h, p = reg.host.split(":")
    s = socket.create_connection((h, int(p)), timeout=10)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        got = b""
        try:
            while len(got) < 9:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        # No HTTP/2 SETTINGS frame (type 4) comes back.
        assert not (len(got) >= 9 and got[3] == 4), got
    finally:
        s.close()


def test_a_token_does_not_pass_to_a_namesake(two):
    """A user deleted and re-created under the same name is someone else:
    the first one's tokens do not carry over (within the seconds of the
    revocation check)."""
    reg, _ = two
    image(f"http://alpha:alpha-pw@{reg.host}", "namesake/app", tag="v1")
    reg.iam("user-create", "alpha", "carol", "--password", "carol-pw-1", "--policy", "SWR FullAccess")
    tok = token(reg, "repository:namesake/app:pull,delete", auth=("carol@alpha", "carol-pw-1")).json()["token"]
    assert claims(tok)["access"][0]["actions"] == ["pull", "delete"]
    assert requests.get(f"{reg.anon_url}/v2/namesake/app/manifests/v1", headers=bearer(tok)).status_code == 200
    reg.iam("user-delete", "alpha", "carol")
    reg.iam("user-create", "alpha", "carol", "--password", "carol-pw-2")
    time.sleep(6)
    assert requests.get(f"{reg.anon_url}/v2/namesake/app/manifests/v1", headers=bearer(tok)).status_code == 401


def test_token_scopes_must_name_valid_repositories(two):
    reg, _ = two
    for name in ["ACME/app", "acme%2Fapp", "*", "../..", "a//b", "-x/app"]:
        r = token(reg, f"repository:{name}:pull,push", auth=("beta", "beta-pw"))
        assert r.status_code == 400 and "invalid scope" in r.json()["errors"][0]["message"], name
    r = token(reg, "registry:everything:*", auth=("beta", "beta-pw"))
    assert r.status_code == 400


def signed(reg, key, method, path, body):
    data = json.dumps(body).encode() if body is not None else b""
    req = SdkRequest(method=method, schema="http", host=reg.host, resource_path=path, query_params=[],
                     header_params={"Content-Type": "application/json"}, body=data)
    Signer(BasicCredentials(key["ak"], key["sk"])).sign(req)
    return dict(req.header_params), data


def test_the_signature_covers_the_body_and_a_change_is_carried_out_once(two):
    reg, keys = two
    path = "/berth/v1/tenants/alpha/users"
    headers, data = signed(reg, keys["alpha"], "POST", path, {"name": "plain", "policies": ["SWR ReadOnlyAccess"]})
    # The captured request, its body swapped, with an unsigned header
    # claiming the original body's hash: refused, nothing created.
    evil = json.dumps({"name": "evil", "policies": ["Tenant Administrator"], "password": "evil-pw-123"}).encode()
    forged = dict(headers, **{"X-Sdk-Content-Sha256": hashlib.sha256(data).hexdigest()})
    r = requests.post(f"{reg.anon_url}{path}", data=evil, headers=forged)
    assert r.status_code == 401 and r.json()["errorCode"] == "SVCSTG.SWR.4010001"
    r = requests.post(f"{reg.anon_url}{path}", data=evil, headers=headers)
    assert r.status_code == 401
    assert requests.get(f"{reg.anon_url}/v2/", auth=("evil@alpha", "evil-pw-123")).status_code == 401
    # UNSIGNED-PAYLOAD (the SDK's marker for bodies it does not hash) is refused.
    h2, d2 = signed(reg, keys["alpha"], "POST", path, {"name": "other"})
    r = requests.post(f"{reg.anon_url}{path}", data=d2, headers=dict(h2, **{"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}))
    assert r.status_code == 401
    # The genuine request works once; its replay is refused.
    r = requests.post(f"{reg.anon_url}{path}", data=data, headers=headers)
    assert r.status_code == 201, r.text
    r = requests.post(f"{reg.anon_url}{path}", data=data, headers=headers)
    assert r.status_code == 409 and r.json()["errorCode"] == "SVCSTG.SWR.4090002" and "replay" in r.json()["errorMsg"]
    # A replay with a second, non-text X-Sdk-Date ahead of the signed one
    # (so the replay record would be keyed by another date) is refused.
    h4, d4 = signed(reg, keys["alpha"], "POST", path, {"name": "twice"})
    assert raw_signed(reg, path, h4, d4, extra=b"X-Sdk-Date: \xff\r\n")[0] == 401
    assert raw_signed(reg, path, h4, d4)[0] == 201
    assert raw_signed(reg, path, h4, d4, extra=b"X-Sdk-Date: \xff\r\n")[0] in (401, 409)
    # Reads may be repeated (clients poll).
    h3, _ = signed(reg, keys["alpha"], "GET", "/berth/v1/whoami", None)
    for _ in range(2):
        assert requests.get(f"{reg.anon_url}/berth/v1/whoami", headers=h3).status_code == 200


def raw_signed(reg, path, headers, data, extra=b""):
    """Sends a signed POST over a raw socket, `extra` header lines first."""
    lines = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items() if k.lower() != "host")
    head = f"POST {path} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Length: {len(data)}\r\n".encode() + extra + lines + b"\r\n"
    h, p = reg.host.split(":")
    s = socket.create_connection((h, int(p)), timeout=10)
    try:
        s.sendall(head + data)
        return read_response(s)
    finally:
        s.close()


def test_files_are_for_berth_alone(two):
    reg, _ = two
    image(f"http://alpha:alpha-pw@{reg.host}", "perm/app", tag="v1")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
    assert mode(reg.data_dir) == 0o700
    for p in reg.data_dir.rglob("*"):
        if p.is_dir():
            assert mode(p) & 0o077 == 0, p
        elif p.is_file():
            assert mode(p) & 0o077 == 0, p
    if BACKEND == "embedded":
        assert any(p.name.startswith("metadata.db") for p in reg.data_dir.iterdir())


def test_an_existing_world_readable_data_directory_is_closed(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "metadata.db").touch(mode=0o644)
    os.chmod(data / "metadata.db", 0o644)
    os.chmod(data, 0o755)
    reg = Registry(data).start()
    try:
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(data / "metadata.db").st_mode) == 0o600
    finally:
        reg.stop()


# 2. Transport --------------------------------------------------------------

def raw_exchange(host, head: bytes, body: bytes, pause_before_read=0.0):
    """Sends a request head and body without waiting for 100 Continue (as
    Go's net/http does) and returns (status, headers, body) of the answer,
    or raises if the connection was reset before the answer could be read."""
    h, p = host.split(":")
    s = socket.create_connection((h, int(p)), timeout=20)
    try:
        s.sendall(head)
        view = memoryview(body)
        while view:
            n = s.send(view[:65536])
            view = view[n:]
        time.sleep(pause_before_read)
        return read_response(s)
    finally:
        s.close()


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def test_early_answers_reach_clients_that_keep_sending(two):
    reg, _ = two
    alpha = f"http://alpha:alpha-pw@{reg.host}"
    body = os.urandom(5 << 20)
    auth = base64.b64encode(b"alpha:alpha-pw").decode()
    for attempt in range(5):
        # Unauthenticated: 401 before the body is read.
        loc = requests.post(f"{alpha}/v2/early/app/blobs/uploads/").headers["Location"]
        head = (f"PATCH {loc} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        status, headers, answer = raw_exchange(reg.host, head, body)
        assert status == 401 and json.loads(answer)["errors"][0]["code"] == "UNAUTHORIZED", attempt
        # Authenticated but out of order: 416 tells where to resume.
        head = (f"PATCH {loc} HTTP/1.1\r\nHost: {reg.host}\r\nAuthorization: Basic {auth}\r\n"
                f"Content-Range: 100-{100 + len(body) - 1}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        status, headers, answer = raw_exchange(reg.host, head, body)
        assert status == 416 and json.loads(answer)["errors"][0]["code"] == "RANGE_INVALID", attempt
        assert headers["location"] == loc


def test_expect_continue_gets_the_final_answer_without_sending_the_body(two):
    reg, _ = two
    h, p = reg.host.split(":")
    s = socket.create_connection((h, int(p)), timeout=10)
    try:
        s.sendall((f"PUT /v2/early/app/blobs/uploads/x?digest=sha256:{'0' * 64} HTTP/1.1\r\nHost: {reg.host}\r\n"
                   f"Expect: 100-continue\r\nContent-Length: {10 << 30}\r\n\r\n").encode())
        status, _, answer = read_response(s)
        assert status == 401 and json.loads(answer)["errors"][0]["code"] == "UNAUTHORIZED"
    finally:
        s.close()


def connect(host):
    h, p = host.split(":")
    return socket.create_connection((h, int(p)), timeout=10)


def both_error_formats(answer):
    """hyper's rejections reach no component: their body carries the
    registry's and the management API's error shape at once."""
    body = json.loads(answer)
    assert body["errors"][0]["code"] == "UNSUPPORTED" and body["errors"][0]["message"]
    assert body["errorCode"].startswith("SVCSTG.SWR.") and body["errorMsg"]
    return body


def test_requests_hyper_cannot_parse_get_json_errors(two):
    reg, _ = two
    cases = [
        (b"GET /v2/ HTTP/1.1\r\nHost: x\r\nNot a header\r\n\r\n", 400),
        (b"GET /v2/" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /v2/ HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GET /v2/ HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ]
    for raw, expected in cases:
        s = connect(reg.host)
        try:
            s.sendall(raw)
            status, headers, answer = read_response(s)
            assert status == expected, raw[:40]
            assert headers["content-type"] == "application/json"
            assert both_error_formats(answer)["errorCode"] == f"SVCSTG.SWR.{expected}0001"
        finally:
            s.close()
    # After an answered request on the same connection, and pipelined
    # behind one.
    s = connect(reg.host)
    try:
        s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {reg.host}\r\n\r\n".encode())
        assert read_response(s)[0] == 401
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nNot a header\r\n\r\n")
        status, _, answer = read_response(s)
        assert status == 400
        both_error_formats(answer)
    finally:
        s.close()


def test_a_blob_that_looks_like_a_rejection_is_served_unchanged(two):
    """The JSON body is added only to hyper's own answers, never to bytes
    of a response, whatever a blob holds."""
    reg, _ = two
    alpha = f"http://alpha:alpha-pw@{reg.host}"
    auth = base64.b64encode(b"alpha:alpha-pw").decode()
    for attempt in range(3):
        now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 1))
        data = f"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: {now}\r\n\r\n".encode()
        digest = push_blob(alpha, "lookalike/app", data)
        get = (f"GET /v2/lookalike/app/blobs/{digest} HTTP/1.1\r\nHost: {reg.host}\r\n"
               f"Authorization: Basic {auth}\r\n\r\n").encode()
        s = connect(reg.host)
        try:
            # Twice on one connection, then pipelined with a malformed request.
            for _ in range(2):
                s.sendall(get)
                status, _, body = read_response(s)
                assert status == 200 and body == data, attempt
            s.sendall(get + b"GET /v2/ HTTP/1.1\r\nNot a header\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
            head, rest = raw.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200") and rest[:len(data)] == data, attempt
            assert rest[len(data):].startswith(b"HTTP/1.1 400 "), attempt
        finally:
            s.close()


def send_and_cut(host, head: bytes, sent: bytes):
    """Sends a head and part of a body, then closes the writing side."""
    h, p = host.split(":")
    s = socket.create_connection((h, int(p)), timeout=10)
    s.sendall(head + sent)
    s.shutdown(socket.SHUT_WR)
    try:
        return read_response(s)
    except (ConnectionError, OSError):
        return None
    finally:
        s.close()


def test_a_body_cut_short_is_not_taken_as_complete(two):
    reg, _ = two
    alpha = f"http://alpha:alpha-pw@{reg.host}"
    auth = base64.b64encode(b"alpha:alpha-pw").decode()
    # A monolithic upload announcing 1,000 bytes, cut after 500 whose digest
    # it gives: the blob is not linked.
    part = os.urandom(500)
    d = sha256(part)
    head = (f"POST /v2/cut/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: {reg.host}\r\n"
            f"Authorization: Basic {auth}\r\nContent-Length: 1000\r\n\r\n").encode()
    answer = send_and_cut(reg.host, head, part)
    assert answer is None or answer[0] >= 400
    assert requests.head(f"{alpha}/v2/cut/app/blobs/{d}").status_code == 404
    # A manifest whose body stops short of its Content-Length is not stored,
    # even when what arrived is a whole valid manifest.
    config = push_blob(alpha, "cut/app", b"{}")
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2}}).encode()
    head = (f"PUT /v2/cut/app/manifests/short HTTP/1.1\r\nHost: {reg.host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {len(m) + 10}\r\n\r\n").encode()
    answer = send_and_cut(reg.host, head, m)
    assert answer is None or answer[0] >= 400
    assert requests.get(f"{alpha}/v2/cut/app/manifests/short").status_code == 404
    # A chunked PATCH whose chunk is not followed by CRLF fails (no 202); by
    # the resume rule the upload keeps at most the bytes that arrived.
    loc = requests.post(f"{alpha}/v2/cut/app/blobs/uploads/").headers["Location"]
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: {reg.host}\r\nAuthorization: Basic {auth}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    answer = send_and_cut(reg.host, head, b"a\r\n0123456789XX\r\n0\r\n\r\n")
    assert answer is not None and answer[0] == 400, answer
    assert json.loads(answer[2])["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    # The chunk's ten bytes arrived before its framing broke.
    r = requests.get(f"{alpha}{loc}")
    assert r.status_code == 204 and r.headers["Range"] == "0-9"
    # A PATCH cut off: the request fails and the upload holds only bytes
    # that arrived, which the client can read back as its Range and resume.
    loc = requests.post(f"{alpha}/v2/cut/app/blobs/uploads/").headers["Location"]
    first = os.urandom(500)
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: {reg.host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Length: 1000\r\n\r\n").encode()
    answer = send_and_cut(reg.host, head, first)
    assert answer is None or answer[0] == 400
    assert requests.get(f"{alpha}{loc}").headers["Range"] == "0-499"
    got = 500
    rest = first[got:] + b"tail"
    r = requests.patch(f"{alpha}{loc}", data=rest, headers={"Content-Range": f"{got}-{got + len(rest) - 1}"})
    assert r.status_code == 202
    whole = first + b"tail"
    r = requests.put(f"{alpha}{loc}", params={"digest": sha256(whole)})
    assert r.status_code == 201, r.text
    assert requests.get(f"{alpha}/v2/cut/app/blobs/{sha256(whole)}").content == whole


@pytest.fixture
def strict(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--header-timeout-secs", "2", "--body-timeout-secs", "2",
                                                   "--max-connections", "3"]).start()
    yield reg
    reg.stop()


def closed_within(s, seconds):
    """Whether the server closes `s` (EOF or reset) within `seconds`."""
    s.settimeout(seconds)
    start = time.time()
    try:
        while True:
            if not s.recv(65536):
                return time.time() - start
    except (ConnectionResetError, BrokenPipeError):
        return time.time() - start
    except socket.timeout:
        return None


def test_idle_slow_and_stalled_connections_are_closed(strict):
    reg = strict
    h, p = reg.host.split(":")
    # Says nothing at all.
    s = socket.create_connection((h, int(p)))
    assert closed_within(s, 6) is not None
    s.close()
    # Slowloris: a header line, a byte a second.
    s = socket.create_connection((h, int(p)))
    s.sendall(b"GET /v2/ HTTP/1.1\r\n")
    start = time.time()
    closed = False
    try:
        for c in b"X-Slow: aaaaaaaaaaaaaaaaaaa":
            s.sendall(bytes([c]))
            time.sleep(0.5)
            if time.time() - start > 8:
                break
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    closed = closed or closed_within(s, 3) is not None
    assert closed and time.time() - start < 10
    s.close()
    # A body that stops arriving: the request fails, the connection ends.
    auth = base64.b64encode(ADMIN[0].encode() + b":" + ADMIN[1].encode()).decode()
    loc = requests.post(f"{reg.url}/v2/stall/app/blobs/uploads/").headers["Location"]
    s = socket.create_connection((h, int(p)))
    s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: {reg.host}\r\nAuthorization: Basic {auth}\r\n"
               f"Content-Length: 1000\r\n\r\n").encode() + b"x" * 10)
    s.settimeout(8)
    start = time.time()
    try:
        answer = read_response(s)
        assert answer[0] >= 400
    except (ConnectionError, OSError):
        pass
    assert time.time() - start < 8
    s.close()
    # The registry still serves.
    assert requests.get(f"{reg.url}/v2/").status_code == 200


def test_a_client_that_stops_reading_is_let_go(strict):
    """A download the client stops reading (its window full) ends after the
    body timeout instead of holding the response forever."""
    reg = strict
    data = os.urandom(64 << 20)
    d = push_blob(reg.url, "stall/read", data)
    auth = base64.b64encode(ADMIN[0].encode() + b":" + ADMIN[1].encode()).decode()
    h, p = reg.host.split(":")
    s = socket.create_connection((h, int(p)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.sendall(f"GET /v2/stall/read/blobs/{d} HTTP/1.1\r\nHost: {reg.host}\r\nAuthorization: Basic {auth}\r\n\r\n".encode())
    time.sleep(6)
    got = 0
    s.settimeout(10)
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert 0 < got < len(data)
    assert requests.get(f"{reg.url}/v2/").status_code == 200


def test_connection_cap(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--max-connections", "3"]).start()
    try:
        h, p = reg.host.split(":")
        time.sleep(0.5)
        held = [socket.create_connection((h, int(p))) for _ in range(3)]
        time.sleep(0.5)
        done = {}

        def fourth():
            done["status"] = requests.get(f"{reg.url}/v2/", timeout=30).status_code

        t = threading.Thread(target=fourth)
        t.start()
        # A fourth connection waits to be accepted (the header timeout,
        # 30 s here, does not free the others meanwhile)…
        time.sleep(3)
        assert "status" not in done
        # …until one closes.
        held[0].close()
        t.join(20)
        assert done.get("status") == 200
        for s in held[1:]:
            s.close()
    finally:
        reg.stop()


# 3. Protocol ---------------------------------------------------------------

def test_index_entries_are_judged_by_their_media_type(registry):
    url, repo = registry.url, "hard/cache"
    cache_config = push_blob(url, repo, b'{"layers":[],"records":[]}')
    layer = push_blob(url, repo, b"a cached layer")
    manifest, manifest_digest = image(url, repo, tag="base")
    entry = lambda mt, d, size: {"mediaType": mt, "digest": d, "size": size}
    buildkit = entry("application/vnd.buildkit.cacheconfig.v0", cache_config, 26)
    for mt in (OCI_INDEX, DOCKER_LIST):
        r, _, _ = put_manifest(url, repo, "cache", {"schemaVersion": 2, "mediaType": mt, "manifests": [buildkit]})
        assert r.status_code == 201, r.text
    for entries in ([entry("application/vnd.oci.image.layer.v1.tar+gzip", layer, 14), buildkit],
                    [entry("application/x-unknown", layer, 14)],
                    # A manifest listed with an unknown type is content too.
                    [entry("application/x-unknown", manifest_digest, 10)],
                    [entry(OCI_MANIFEST, manifest_digest, 10), buildkit]):
        r, _, _ = put_manifest(url, repo, "cache", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        assert r.status_code == 201, r.text
    # Missing content is named.
    ghost = "sha256:" + "6" * 64
    r, _, _ = put_manifest(url, repo, "cache", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                "manifests": [buildkit, entry("application/x-unknown", ghost, 1)]})
    assert r.status_code == 400 and err(r) == "MANIFEST_BLOB_UNKNOWN"
    assert ghost in r.json()["errors"][0]["message"] and r.json()["errors"][0]["detail"]["digest"] == ghost
    # A blob is not a manifest: an entry typed as one must be a manifest.
    r, _, _ = put_manifest(url, repo, "cache", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                "manifests": [entry(OCI_MANIFEST, layer, 14)]})
    assert r.status_code == 400 and err(r) == "MANIFEST_BLOB_UNKNOWN"
    assert requests.get(f"{url}/v2/{repo}/manifests/cache").status_code == 200


def test_media_types_ignore_case_and_parameters(registry):
    url, repo = registry.url, "hard/case"
    config = push_blob(url, repo, b"{}")
    m = {"schemaVersion": 2, "layers": [],
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2}}
    body = json.dumps(m).encode()
    r = requests.put(f"{url}/v2/{repo}/manifests/v1", data=body,
                     headers={"Content-Type": "Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8"})
    assert r.status_code == 201, r.text
    r = requests.get(f"{url}/v2/{repo}/manifests/v1", headers={"Accept": "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON"})
    assert r.status_code == 200 and r.headers["Content-Type"] == OCI_MANIFEST


def test_reads_of_malformed_references_are_unknown(registry):
    url = registry.url
    for ref in [".INVALID_MANIFEST_NAME", "a:b", "sha256:xyz"]:
        for method in ("GET", "HEAD"):
            r = requests.request(method, f"{url}/v2/hard/refs/manifests/{ref}")
            assert r.status_code == 404, (ref, method, r.status_code)
            if method == "GET":
                assert err(r) == "MANIFEST_UNKNOWN"
    r = requests.put(f"{url}/v2/hard/refs/manifests/.INVALID_MANIFEST_NAME", data=b"{}",
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400


def test_mount_challenge_asks_for_the_source_too(registry):
    r = requests.post(f"{registry.anon_url}/v2/hard/to/blobs/uploads/",
                      params={"mount": "sha256:" + "1" * 64, "from": "hard/from"})
    assert r.status_code == 401
    assert 'scope="repository:hard/to:pull,push repository:hard/from:pull"' in r.headers["WWW-Authenticate"]


def test_ranges_follow_rfc_9110(registry):
    url, repo = registry.url, "hard/ranges"
    data = os.urandom(1000)
    d = push_blob(url, repo, data)
    r = requests.get(f"{url}/v2/{repo}/blobs/{d}", headers={"Range": "bytes=1000-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */1000" and err(r) == "RANGE_INVALID"
    for ignored in ["items=0-1", "bytes=5-2", "bytes=x-y", "bytes=0-1,5-6"]:
        r = requests.get(f"{url}/v2/{repo}/blobs/{d}", headers={"Range": ignored})
        assert r.status_code == 200 and r.content == data, ignored
    r = requests.get(f"{url}/v2/{repo}/blobs/{d}", headers={"Range": "Bytes=0-0"})
    assert r.status_code == 206 and r.content == data[:1]
    # Range is defined for GET only (§14.2): HEAD describes the whole blob.
    r = requests.head(f"{url}/v2/{repo}/blobs/{d}", headers={"Range": "bytes=0-9"})
    assert r.status_code == 200 and r.headers["Content-Length"] == "1000" and "Content-Range" not in r.headers


# 4. Housekeeping -----------------------------------------------------------

def test_unknown_management_paths(two):
    reg, keys = two
    r = requests.get(f"{reg.anon_url}/v2/manage/nonsense")
    assert r.status_code == 401
    h, _ = signed(reg, keys["alpha"], "GET", "/v2/manage/nonsense", None)
    r = requests.get(f"{reg.anon_url}/v2/manage/nonsense", headers=h)
    assert r.status_code == 404 and r.json()["errorCode"] == "SVCSTG.SWR.4040001", r.text
    h, _ = signed(reg, keys["alpha"], "GET", "/v3/manage/what/ever", None)
    assert requests.get(f"{reg.anon_url}/v3/manage/what/ever", headers=h).status_code == 404
    r = requests.get(f"{reg.anon_url}/v2/manage/namespaces/x/repos/y/triggers")
    assert r.status_code == 401


def test_upload_records_without_files_expire(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--upload-expiry-secs", "3", "--var", "gc_schedule=* * * * * *"]).start()
    try:
        loc = requests.post(f"{reg.url}/v2/exp/orphan/blobs/uploads/").headers["Location"]
        upload_id = loc.rsplit("/", 1)[1]
        # A crash took the file but not the record.
        reg.storage.delete_upload(upload_id)
        db = reg.db()
        count = lambda: db.execute("SELECT count(*) FROM kv WHERE key = ?", (f"upload/{upload_id}",)).fetchone()[0]
        assert count() == 1
        deadline = time.time() + 20
        while count():
            assert time.time() < deadline, "the orphaned upload record was never removed"
            time.sleep(0.5)
    finally:
        reg.stop()


def test_access_log(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--log-json"]).start()
    try:
        image(reg.url, "logged/app", tag="v1")
        requests.get(f"{reg.anon_url}/v2/logged/app/manifests/v1")
        tok = token(reg, "repository:logged/app:pull", auth=ADMIN).json()["token"]
        requests.get(f"{reg.anon_url}/v2/logged/app/manifests/v1", headers=bearer(tok))
        requests.head(f"{reg.anon_url}/v2/logged/app/manifests/v1", headers=bearer(tok))
    finally:
        reg.stop()
    text = reg.log.read_text()
    assert ADMIN[1] not in text and tok not in text
    lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
    access = [l["fields"] for l in lines if l.get("target") == "berth::access"]
    gets = [a for a in access if a["path"] == "/v2/logged/app/manifests/v1" and a["method"] == "GET"]
    assert [(a["status"], a["user"]) for a in gets] == [(401, "-"), (200, "admin@admin")]
    assert gets[1]["bytes"] > 0 and gets[1]["duration_us"] > 0 and gets[1]["client"].startswith("127.0.0.1:")
    assert gets[1]["complete"] is True
    head = [a for a in access if a["method"] == "HEAD" and a["path"] == "/v2/logged/app/manifests/v1"]
    assert head and head[0]["status"] == 200 and head[0]["complete"] is True
    put = [a for a in access if a["method"] == "PUT" and a["path"] == "/v2/logged/app/manifests/v1"]
    assert put and put[0]["status"] == 201 and put[0]["user"] == "admin"
    # Third-party crates stay at warn.
    assert not [l for l in lines if l.get("level") in ("INFO", "DEBUG") and not l.get("target", "").startswith("berth")]


def test_idle_http2_connections_over_tls_are_closed(tmp_path):
    """An HTTP/2 connection that answers pings but starts no request is
    asked to go (GOAWAY) after the header timeout, instead of holding a
    connection slot forever."""
    import ssl
    import subprocess
    from conftest import BERTH, ROOT
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    reg = Registry(tmp_path / "data")
    reg.proc = subprocess.Popen([str(BERTH), "serve", "--listen", reg.host, "--data-dir", str(reg.data_dir),
                                 "--manifest", str(ROOT / "spin.toml"), *reg.store_args,
                                 "--tls-cert", str(cert), "--tls-key", str(key),
                                 "--header-timeout-secs", "2", "--body-timeout-secs", "60"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, BERTH_ADMIN_PASSWORD=ADMIN[1]))
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.set_alpn_protocols(["h2"])
        h, p = reg.host.split(":")
        deadline = time.time() + 60
        while True:
            try:
                raw = socket.create_connection((h, int(p)), timeout=1)
                break
            except OSError:
                assert time.time() < deadline and reg.proc.poll() is None
                time.sleep(0.1)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        assert s.selected_alpn_protocol() == "h2"
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        s.settimeout(1)
        start, buf, goaway, closed = time.time(), b"", False, False
        while time.time() - start < 20 and not closed:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                closed = True
                break
            buf += chunk
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                kind, flags, payload = buf[3], buf[4], buf[9:9 + length]
                buf = buf[9 + length:]
                if kind == 4 and not flags & 1:  # SETTINGS: acknowledge
                    s.sendall(bytes.fromhex("000000040100000000"))
                elif kind == 6 and not flags & 1:  # PING: answer, as a live peer does
                    s.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
                elif kind == 7:
                    goaway = True
        elapsed = time.time() - start
        s.close()
        assert goaway and elapsed < 12, (goaway, closed, elapsed)
    finally:
        reg.stop()
