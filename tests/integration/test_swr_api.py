"""The SWR-compatible management API, driven by Huawei Cloud's official
Python SDK (huaweicloudsdkswr) pointed at the local registry: one test per
operation, and the negative cases (bad signature, expired date, missing
permission, wrong tenant, invalid names)."""

import datetime
import hashlib
import hmac
import json

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, ServerResponseException
from huaweicloudsdkswr.v2 import (
    CreateNamespaceAuthRequest,
    CreateNamespaceRequest,
    CreateNamespaceRequestBody,
    DeleteNamespaceAuthRequest,
    DeleteNamespacesRequest,
    ListApiVersionsRequest,
    ListNamespacesRequest,
    ListReposDetailsRequest,
    ShowNamespaceAuthRequest,
    ShowNamespaceRequest,
    SwrClient,
    UpdateNamespaceAuthRequest,
    UserAuth,
)

from conftest import Registry, image


@pytest.fixture(scope="module")
def swr(tmp_path_factory):
    """A registry with tenants `acme` and `rival`, users in acme with
    different policies, and an access key for each principal."""
    reg = Registry(tmp_path_factory.mktemp("swr") / "data").start()
    acme = reg.iam("tenant-create", "acme", "--password", "acme-pw")
    rival = reg.iam("tenant-create", "rival", "--password", "rival-pw")
    users = {}
    for user, policy in [("reader", "SWR ReadOnlyAccess"), ("dev", None)]:
        args = ["user-create", "acme", user, "--password", f"{user}-pw"] + (["--policy", policy] if policy else [])
        users[user] = reg.iam(*args)["id"]
    keys = {
        "acme": (reg.iam("key-create", "acme", "acme"), acme["project_id"]),
        "rival": (reg.iam("key-create", "rival", "rival"), rival["project_id"]),
        "reader": (reg.iam("key-create", "acme", "reader"), acme["project_id"]),
        "dev": (reg.iam("key-create", "acme", "dev"), acme["project_id"]),
    }
    yield reg, keys, users
    reg.stop()


def client(reg, key, project=None):
    k, project_id = key
    creds = BasicCredentials(k["ak"], k["sk"], project if project is not None else project_id)
    return SwrClient.new_builder().with_credentials(creds).with_endpoints([reg.anon_url]).build()


def code_of(excinfo):
    return excinfo.value.status_code, excinfo.value.error_code


def test_list_api_versions(swr):
    reg, keys, _ = swr
    r = client(reg, keys["acme"]).list_api_versions(ListApiVersionsRequest())
    assert [v.id for v in r.versions] == ["v2"] and r.versions[0].status == "CURRENT"


def test_namespace_lifecycle(swr):
    reg, keys, _ = swr
    c = client(reg, keys["acme"])
    r = c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-apps")))
    assert r.status_code == 201
    shown = c.show_namespace(ShowNamespaceRequest(namespace="acme-apps"))
    assert shown.name == "acme-apps" and shown.creator_name == "acme" and shown.auth == 7 and shown.id > 0
    listed = c.list_namespaces(ListNamespacesRequest())
    assert "acme-apps" in [n.name for n in listed.namespaces]
    assert [n.name for n in c.list_namespaces(ListNamespacesRequest(namespace="apps")).namespaces] == ["acme-apps"]
    # Names are global and unique.
    with pytest.raises(ClientRequestException) as e:
        c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-apps")))
    assert code_of(e) == (409, "SVCSTG.SWR.4090001")
    with pytest.raises(ClientRequestException) as e:
        client(reg, keys["rival"]).create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-apps")))
    assert e.value.status_code == 409
    r = c.delete_namespaces(DeleteNamespacesRequest(namespace="acme-apps"))
    assert r.status_code == 204
    with pytest.raises(ClientRequestException) as e:
        c.show_namespace(ShowNamespaceRequest(namespace="acme-apps"))
    assert code_of(e) == (404, "SVCSTG.SWR.4040001")


def test_invalid_namespace_names(swr):
    reg, keys, _ = swr
    c = client(reg, keys["acme"])
    for bad in ["Upper", "a--b", "-x", "x" * 65]:
        with pytest.raises(ClientRequestException) as e:
            c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace=bad)))
        assert code_of(e) == (400, "SVCSTG.SWR.4000002"), bad


def test_delete_refuses_non_empty_namespace(swr):
    reg, keys, _ = swr
    c = client(reg, keys["acme"])
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-full")))
    image(f"http://acme:acme-pw@{reg.host}", "acme-full/app", tag="v1")
    with pytest.raises(ClientRequestException) as e:
        c.delete_namespaces(DeleteNamespacesRequest(namespace="acme-full"))
    assert code_of(e) == (400, "SVCSTG.SWR.4000004")
    assert c.show_namespace(ShowNamespaceRequest(namespace="acme-full")).name == "acme-full"


def test_namespace_access(swr):
    reg, keys, users = swr
    c = client(reg, keys["acme"])
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-team")))
    image(f"http://acme:acme-pw@{reg.host}", "acme-team/app", tag="v1")
    dev = client(reg, keys["dev"])
    dev_url = f"http://dev%40acme:dev-pw@{reg.host}"
    # Without a grant or policy the user sees and pulls nothing.
    with pytest.raises(ClientRequestException) as e:
        dev.show_namespace(ShowNamespaceRequest(namespace="acme-team"))
    assert e.value.status_code == 404
    assert requests.get(f"{dev_url}/v2/acme-team/app/manifests/v1").status_code == 403

    r = c.create_namespace_auth(CreateNamespaceAuthRequest(
        namespace="acme-team", body=[UserAuth(user_id=users["dev"], user_name="dev", auth=1)]))
    assert r.status_code == 201
    shown = c.show_namespace_auth(ShowNamespaceAuthRequest(namespace="acme-team"))
    assert shown.self_auth.auth == 7
    assert [(o.user_id, o.user_name, o.auth) for o in shown.others_auths] == [(users["dev"], "dev", 1)]
    assert dev.show_namespace(ShowNamespaceRequest(namespace="acme-team")).auth == 1
    assert requests.get(f"{dev_url}/v2/acme-team/app/manifests/v1").status_code == 200
    assert requests.post(f"{dev_url}/v2/acme-team/app/blobs/uploads/").status_code == 403
    # Read cannot grant.
    with pytest.raises(ClientRequestException) as e:
        dev.create_namespace_auth(CreateNamespaceAuthRequest(
            namespace="acme-team", body=[UserAuth(user_id=users["dev"], user_name="dev", auth=7)]))
    assert e.value.status_code == 403

    c.update_namespace_auth(UpdateNamespaceAuthRequest(
        namespace="acme-team", body=[UserAuth(user_id=users["dev"], user_name="dev", auth=3)]))
    assert dev.show_namespace(ShowNamespaceRequest(namespace="acme-team")).auth == 3
    image(dev_url, "acme-team/app", layers=(b"dev layer",), tag="v2")
    with pytest.raises(ClientRequestException) as e:
        c.create_namespace_auth(CreateNamespaceAuthRequest(
            namespace="acme-team", body=[UserAuth(user_id=users["dev"], user_name="dev", auth=5)]))
    assert e.value.status_code == 400

    r = c.delete_namespace_auth(DeleteNamespaceAuthRequest(namespace="acme-team", body=[users["dev"]]))
    assert r.status_code == 204
    assert requests.get(f"{dev_url}/v2/acme-team/app/manifests/v1").status_code == 403


def test_permissions_and_tenants(swr):
    reg, keys, users = swr
    c = client(reg, keys["acme"])
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-private")))
    # ReadOnlyAccess reads but cannot create or delete.
    reader = client(reg, keys["reader"])
    assert reader.show_namespace(ShowNamespaceRequest(namespace="acme-private")).auth == 1
    with pytest.raises(ClientRequestException) as e:
        reader.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="reader-ns")))
    assert code_of(e) == (403, "SVCSTG.SWR.4030001")
    with pytest.raises(ClientRequestException) as e:
        reader.delete_namespaces(DeleteNamespacesRequest(namespace="acme-private"))
    assert e.value.status_code == 403
    # Another tenant neither sees nor touches it.
    rival = client(reg, keys["rival"])
    assert "acme-private" not in [n.name for n in rival.list_namespaces(ListNamespacesRequest()).namespaces]
    for call in [lambda: rival.show_namespace(ShowNamespaceRequest(namespace="acme-private")),
                 lambda: rival.delete_namespaces(DeleteNamespacesRequest(namespace="acme-private")),
                 lambda: rival.create_namespace_auth(CreateNamespaceAuthRequest(
                     namespace="acme-private", body=[UserAuth(user_id=users["dev"], user_name="dev", auth=7)]))]:
        with pytest.raises(ClientRequestException) as e:
            call()
        assert e.value.status_code == 404
    # A project id that is not the key's tenant's.
    with pytest.raises(ClientRequestException) as e:
        client(reg, keys["acme"], project=keys["rival"][1]).list_namespaces(ListNamespacesRequest())
    assert e.value.status_code == 403


def signed_get(reg, ak, sk, path, date):
    """Signs a GET the way the SDK does, with a chosen date."""
    canonical = "\n".join(["GET", path.rstrip("/") + "/", "", f"host:{reg.host}", f"x-sdk-date:{date}", "",
                           "host;x-sdk-date", hashlib.sha256(b"").hexdigest()])
    sts = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    sig = hmac.new(sk.encode(), sts.encode(), hashlib.sha256).hexdigest()
    return requests.get(f"{reg.anon_url}{path}", headers={
        "X-Sdk-Date": date,
        "Authorization": f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders=host;x-sdk-date, Signature={sig}"})


def test_signature_errors(swr):
    reg, keys, _ = swr
    k = keys["acme"][0]
    now = datetime.datetime.now(datetime.timezone.utc)
    fmt = lambda t: t.strftime("%Y%m%dT%H%M%SZ")
    # The hand-signed request is accepted: the check is really the SDK's algorithm.
    assert signed_get(reg, k["ak"], k["sk"], "/v2/manage/namespaces", fmt(now)).status_code == 200
    r = signed_get(reg, k["ak"], k["sk"] + "x", "/v2/manage/namespaces", fmt(now))
    assert r.status_code == 401 and r.json()["errorCode"] == "SVCSTG.SWR.4010001"
    assert "signature" in r.json()["errorMsg"]
    r = signed_get(reg, k["ak"], k["sk"], "/v2/manage/namespaces", fmt(now - datetime.timedelta(minutes=20)))
    assert r.status_code == 401 and "15 minutes" in r.json()["errorMsg"]
    r = signed_get(reg, "NOSUCHKEY0000000000", k["sk"], "/v2/manage/namespaces", fmt(now))
    assert r.status_code == 401
    r = requests.get(f"{reg.anon_url}/v2/manage/namespaces")
    assert r.status_code == 401 and r.json()["errorCode"] == "SVCSTG.SWR.4010001"
    # A disabled key stops working at once.
    reg.iam("key-set", keys["dev"][0]["ak"], "--active", "false")
    with pytest.raises(ClientRequestException) as e:
        client(reg, keys["dev"]).list_namespaces(ListNamespacesRequest())
    assert e.value.status_code == 401
    reg.iam("key-set", keys["dev"][0]["ak"], "--active", "true")


def test_not_yet_implemented_operations_say_so(swr):
    reg, keys, _ = swr
    with pytest.raises(ServerResponseException) as e:
        client(reg, keys["acme"]).list_repos_details(ListReposDetailsRequest())
    assert code_of(e) == (501, "SVCSTG.SWR.5010001")


def test_management_changes_are_audited(swr):
    reg, keys, _ = swr
    client(reg, keys["acme"]).create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-audited")))
    import sqlite3
    db = sqlite3.connect(reg.data_dir / "metadata.db")
    events = [json.loads(v) for (v,) in db.execute("SELECT value FROM kv WHERE key LIKE 'audit/acme/%' ORDER BY key")]
    assert {"operation": "POST /v2/manage/namespaces", "user": "acme", "status": 201}.items() <= events[-1].items()
