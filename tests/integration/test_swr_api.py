"""The SWR-compatible management API, driven by Huawei Cloud's official
Python SDK (huaweicloudsdkswr) pointed at the local registry: one test per
operation, and the negative cases (bad signature, expired date, missing
permission, wrong tenant, invalid names)."""

import datetime
import hashlib
import hmac
import json
import time

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateAuthorizationTokenRequest,
    CreateRepoDomainsRequest,
    CreateRepoDomainsRequestBody,
    CreateSecretRequest,
    DeleteRepoDomainsRequest,
    ListQuotasRequest,
    ListRepoDomainsRequest,
    ListSharedRepoDetailsRequest,
    ListSharedReposDetailsRequest,
    ShowAccessDomainRequest,
    ShowDomainOverviewRequest,
    ShowDomainResourceReportsRequest,
    UpdateRepoDomainsRequest,
    UpdateRepoDomainsRequestBody,
    CreateRepoRequest,
    CreateRepoRequestBody,
    CreateRepoTagRequest,
    CreateRepoTagRequestBody,
    CreateUserRepositoryAuthRequest,
    DeleteRepoRequest,
    DeleteRepoTagRequest,
    DeleteUserRepositoryAuthRequest,
    ListRepoDetailsRequest,
    ListRepositoryTagRequest,
    ListRepositoryTagsRequest,
    ShowRepositoryRequest,
    ShowRepoTagRequest,
    ShowUserRepositoryAuthRequest,
    UpdateRepoRequest,
    UpdateRepoRequestBody,
    UpdateUserRepositoryAuthRequest,
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

from conftest import Registry, image, skopeo_push


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
    from huaweicloudsdkswr.v2 import ShowApiVersionRequest
    r = client(reg, keys["acme"]).list_api_versions(ListApiVersionsRequest())
    assert [v.id for v in r.versions] == ["v2"] and r.versions[0].status == "CURRENT"
    v = client(reg, keys["acme"]).show_api_version(ShowApiVersionRequest(api_version="v2"))
    assert v.version.id == "v2" and v.version.links.rel == "self"
    with pytest.raises(ClientRequestException) as e:
        client(reg, keys["acme"]).show_api_version(ShowApiVersionRequest(api_version="v3"))
    assert e.value.status_code == 404
    # /v2/ is still the registry's.
    assert requests.get(f"{reg.anon_url}/v2/").status_code == 401


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
    # Names are global and unique. (A second later, so the SDK's request is
    # not byte for byte the first one, which the replay defence refuses.)
    time.sleep(1.1)
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


def test_sync_operations_of_an_unknown_organization_are_not_found(swr):
    reg, keys, _ = swr
    from huaweicloudsdkswr.v2 import ListImageAutoSyncReposDetailsRequest
    with pytest.raises(ClientRequestException) as e:
        client(reg, keys["acme"]).list_image_auto_sync_repos_details(
            ListImageAutoSyncReposDetailsRequest(namespace="x", repository="y"))
    assert e.value.status_code == 404


def test_repository_lifecycle(swr):
    reg, keys, _ = swr
    c = client(reg, keys["acme"])
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-repos")))
    r = c.create_repo(CreateRepoRequest(namespace="acme-repos", body=CreateRepoRequestBody(
        repository="empty", is_public=False, category="linux", description="made by the SDK")))
    assert r.status_code == 201
    with pytest.raises(ClientRequestException) as e:
        c.create_repo(CreateRepoRequest(namespace="acme-repos", body=CreateRepoRequestBody(repository="empty")))
    assert e.value.status_code == 409
    with pytest.raises(ClientRequestException) as e:
        c.create_repo(CreateRepoRequest(namespace="acme-repos", body=CreateRepoRequestBody(repository="Bad Name")))
    assert code_of(e) == (400, "SVCSTG.SWR.4000002")
    # A pushed image: two tags on one manifest, a nested name.
    url = f"http://acme:acme-pw@{reg.host}"
    m, digest = image(url, "acme-repos/group/app", layers=(b"x" * 1000, b"y" * 500), tag="v1")
    image(url, "acme-repos/group/app", layers=(b"x" * 1000, b"y" * 500), tag="latest")
    for _ in range(3):
        requests.get(f"{url}/v2/acme-repos/group/app/manifests/v1",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    shown = c.show_repository(ShowRepositoryRequest(namespace="acme-repos", repository="group$app"))
    assert shown.name == "group/app" and shown.num_images == 2 and shown.is_public is False
    manifest_len = len(requests.get(f"{url}/v2/acme-repos/group/app/manifests/v1",
                                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content)
    config_size = m["config"]["size"]
    assert shown.size == manifest_len + config_size + 1500
    assert shown.num_download >= 3
    assert shown.created.endswith("Z") and shown.updated >= shown.created

    c.update_repo(UpdateRepoRequest(namespace="acme-repos", repository="empty",
                                    body=UpdateRepoRequestBody(is_public=True, category="db", description="now public")))
    shown = c.show_repository(ShowRepositoryRequest(namespace="acme-repos", repository="empty"))
    assert (shown.is_public, shown.category, shown.description) == (True, "db", "now public")

    # v2 listing with filters and a Content-Range; v3 with a marker.
    listed = c.list_repos_details(ListReposDetailsRequest(namespace="acme-repos"))
    assert [x.name for x in listed.body] == ["empty", "group/app"]
    assert listed.content_range == "0-1/2"
    assert [x.name for x in c.list_repos_details(ListReposDetailsRequest(filter="namespace::acme-repos|category::db")).body] == ["empty"]
    page = c.list_repos_details(ListReposDetailsRequest(namespace="acme-repos", limit="1", offset="1"))
    assert [x.name for x in page.body] == ["group/app"] and page.content_range == "1-1/2"
    v3 = c.list_repo_details(ListRepoDetailsRequest(namespace="acme-repos", limit=1))
    assert [x.name for x in v3.repos] == ["empty"] and v3.next_marker == 1
    v3 = c.list_repo_details(ListRepoDetailsRequest(namespace="acme-repos", limit=1, marker=1))
    assert [x.name for x in v3.repos] == ["group/app"] and not v3.next_marker
    assert [x.name for x in c.list_repo_details(ListRepoDetailsRequest(is_public=True)).repos] == ["empty"]

    # The public repository is pullable without credentials; the private one is not.
    image(url, "acme-repos/empty", tag="v1")
    anon = requests.get(f"{reg.anon_url}/service/token", params={"scope": "repository:acme-repos/empty:pull"}).json()["token"]
    r = requests.get(f"{reg.anon_url}/v2/acme-repos/empty/manifests/v1", headers={"Authorization": f"Bearer {anon}",
                     "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200
    anon = requests.get(f"{reg.anon_url}/service/token", params={"scope": "repository:acme-repos/group/app:pull"}).json()["token"]
    r = requests.get(f"{reg.anon_url}/v2/acme-repos/group/app/manifests/v1", headers={"Authorization": f"Bearer {anon}"})
    assert r.status_code == 401
    # Another tenant reads the public one, never the private one.
    rival = client(reg, keys["rival"])
    assert rival.show_repository(ShowRepositoryRequest(namespace="acme-repos", repository="empty")).is_public
    with pytest.raises(ClientRequestException) as e:
        rival.show_repository(ShowRepositoryRequest(namespace="acme-repos", repository="group$app"))
    assert e.value.status_code == 404
    with pytest.raises(ClientRequestException) as e:
        rival.delete_repo(DeleteRepoRequest(namespace="acme-repos", repository="empty"))
    assert e.value.status_code == 403

    assert c.delete_repo(DeleteRepoRequest(namespace="acme-repos", repository="group$app")).status_code == 204
    assert requests.get(f"{url}/v2/acme-repos/group/app/manifests/v1").status_code == 404
    assert "acme-repos/group/app" not in requests.get(f"{url}/v2/_catalog").json()["repositories"]


def test_repository_tags(swr):
    reg, keys, _ = swr
    c = client(reg, keys["acme"])
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-tags")))
    url = f"http://acme:acme-pw@{reg.host}"
    _, d1 = image(url, "acme-tags/app", layers=(b"one",), tag="1.0")
    _, d2 = image(url, "acme-tags/app", layers=(b"two", b"three"), tag="2.0")
    tags = c.list_repository_tags(ListRepositoryTagsRequest(namespace="acme-tags", repository="app"))
    assert [(t.tag, t.digest) for t in tags.body] == [("1.0", d1), ("2.0", d2)] and tags.content_range == "0-1/2"
    assert tags.body[0].manifest == "application/vnd.oci.image.manifest.v1+json" and tags.body[0].schema == 3
    assert tags.body[1].size > tags.body[0].size
    assert [t.tag for t in c.list_repository_tags(ListRepositoryTagsRequest(namespace="acme-tags", repository="app", tag="2")).body] == ["2.0"]
    shown = c.show_repo_tag(ShowRepoTagRequest(namespace="acme-tags", repository="app", tag="2.0"))
    assert shown.digest == d2 and shown.path == "acme-tags/app:2.0"
    # A new tag from an existing one; no silent overwrite.
    r = c.create_repo_tag(CreateRepoTagRequest(namespace="acme-tags", repository="app",
                          body=CreateRepoTagRequestBody(source_tag="1.0", destination_tag="stable")))
    assert r.status_code == 201
    assert requests.get(f"{url}/v2/acme-tags/app/manifests/stable", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).headers["Docker-Content-Digest"] == d1
    with pytest.raises(ClientRequestException) as e:
        c.create_repo_tag(CreateRepoTagRequest(namespace="acme-tags", repository="app",
                          body=CreateRepoTagRequestBody(source_tag="2.0", destination_tag="stable")))
    assert e.value.status_code == 409
    c.create_repo_tag(CreateRepoTagRequest(namespace="acme-tags", repository="app",
                      body=CreateRepoTagRequestBody(source_tag="2.0", destination_tag="stable", override=True)))
    assert c.show_repo_tag(ShowRepoTagRequest(namespace="acme-tags", repository="app", tag="stable")).digest == d2
    # v3 paging by marker.
    v3 = c.list_repository_tag(ListRepositoryTagRequest(namespace="acme-tags", repository="app", limit=2))
    assert [t.tag for t in v3.tags] == ["1.0", "2.0"] and v3.has_more and v3.next_marker == "2.0"
    v3 = c.list_repository_tag(ListRepositoryTagRequest(namespace="acme-tags", repository="app", limit=2, marker="2.0"))
    assert [t.tag for t in v3.tags] == ["stable"] and not v3.has_more
    assert c.delete_repo_tag(DeleteRepoTagRequest(namespace="acme-tags", repository="app", tag="1.0")).status_code == 204
    assert requests.get(f"{url}/v2/acme-tags/app/tags/list").json()["tags"] == ["2.0", "stable"]
    with pytest.raises(ClientRequestException) as e:
        c.show_repo_tag(ShowRepoTagRequest(namespace="acme-tags", repository="app", tag="1.0"))
    assert e.value.status_code == 404


def test_repository_access(swr):
    reg, keys, users = swr
    c = client(reg, keys["acme"])
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-grants")))
    url = f"http://acme:acme-pw@{reg.host}"
    image(url, "acme-grants/app", tag="v1")
    image(url, "acme-grants/other", tag="v1")
    dev_url = f"http://dev%40acme:dev-pw@{reg.host}"
    assert requests.get(f"{dev_url}/v2/acme-grants/app/manifests/v1").status_code == 403
    c.create_user_repository_auth(CreateUserRepositoryAuthRequest(
        namespace="acme-grants", repository="app", body=[UserAuth(user_id=users["dev"], user_name="dev", auth=3)]))
    shown = c.show_user_repository_auth(ShowUserRepositoryAuthRequest(namespace="acme-grants", repository="app"))
    assert shown.self_auth.auth == 7 and [(o.user_name, o.auth) for o in shown.others_auths] == [("dev", 3)]
    # The grant covers that repository only.
    assert requests.get(f"{dev_url}/v2/acme-grants/app/manifests/v1").status_code == 200
    image(dev_url, "acme-grants/app", layers=(b"by dev",), tag="v2")
    assert requests.get(f"{dev_url}/v2/acme-grants/other/manifests/v1").status_code == 403
    assert requests.delete(f"{dev_url}/v2/acme-grants/app/manifests/v2").status_code == 403
    c.update_user_repository_auth(UpdateUserRepositoryAuthRequest(
        namespace="acme-grants", repository="app", body=[UserAuth(user_id=users["dev"], user_name="dev", auth=1)]))
    assert requests.post(f"{dev_url}/v2/acme-grants/app/blobs/uploads/").status_code == 403
    c.delete_user_repository_auth(DeleteUserRepositoryAuthRequest(namespace="acme-grants", repository="app", body=[users["dev"]]))
    assert requests.get(f"{dev_url}/v2/acme-grants/app/manifests/v1").status_code == 403


def test_management_changes_are_audited(swr):
    reg, keys, _ = swr
    client(reg, keys["acme"]).create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-audited")))
    db = reg.db()
    events = [json.loads(v) for (v,) in db.execute("SELECT value FROM kv WHERE key LIKE 'audit/acme/%' ORDER BY key")]
    assert {"operation": "POST /v2/manage/namespaces", "user": "acme", "status": 201}.items() <= events[-1].items()


def test_sharing_with_another_tenant(swr):
    reg, keys, _ = swr
    c, rival = client(reg, keys["acme"]), client(reg, keys["rival"])
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-shared")))
    url = f"http://acme:acme-pw@{reg.host}"
    image(url, "acme-shared/app", tag="v1")
    rival_url = f"http://rival:rival-pw@{reg.host}"
    assert requests.get(f"{rival_url}/v2/acme-shared/app/manifests/v1").status_code == 403
    r = c.create_repo_domains(CreateRepoDomainsRequest(namespace="acme-shared", repository="app", body=CreateRepoDomainsRequestBody(
        access_domain="rival", permit="read", deadline="forever", description="for rival")))
    assert r.status_code == 201
    with pytest.raises(ClientRequestException) as e:
        c.create_repo_domains(CreateRepoDomainsRequest(namespace="acme-shared", repository="app", body=CreateRepoDomainsRequestBody(
            access_domain="rival", permit="read", deadline="forever")))
    assert e.value.status_code == 409
    for bad in [dict(access_domain="nosuch", permit="read", deadline="forever"),
                dict(access_domain="rival", permit="write", deadline="forever"),
                dict(access_domain="acme", permit="read", deadline="forever"),
                dict(access_domain="rival", permit="read", deadline="2001-01-01T00:00:00Z")]:
        with pytest.raises(ClientRequestException) as e:
            c.create_repo_domains(CreateRepoDomainsRequest(namespace="acme-shared", repository="app",
                                                           body=CreateRepoDomainsRequestBody(**bad)))
        assert e.value.status_code in (400, 404, 409), bad
    listed = c.list_repo_domains(ListRepoDomainsRequest(namespace="acme-shared", repository="app"))
    assert [(d.access_domain, d.permit, d.deadline) for d in listed.body] == [("rival", "read", "forever")]
    shown = c.show_access_domain(ShowAccessDomainRequest(namespace="acme-shared", repository="app", access_domain="rival"))
    assert shown.exist and shown.description == "for rival"
    assert not c.show_access_domain(ShowAccessDomainRequest(namespace="acme-shared", repository="app", access_domain="nosuch")).exist
    # The other tenant pulls (read only) and sees it among shared repositories.
    assert requests.get(f"{rival_url}/v2/acme-shared/app/manifests/v1").status_code == 200
    assert requests.post(f"{rival_url}/v2/acme-shared/app/blobs/uploads/").status_code == 403
    mine = rival.list_shared_repos_details(ListSharedReposDetailsRequest(center="thirdparty"))
    assert [(x.namespace, x.name) for x in mine.body] == [("acme-shared", "app")] and mine.content_range == "0-0/1"
    assert [x.name for x in rival.list_shared_repo_details(ListSharedRepoDetailsRequest(shared_by="thirdparty")).repos] == ["app"]
    assert [x.name for x in c.list_shared_repos_details(ListSharedReposDetailsRequest(center="self")).body] == ["app"]
    # A deadline in the past ends the share; deleting it too.
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    c.update_repo_domains(UpdateRepoDomainsRequest(namespace="acme-shared", repository="app", access_domain="rival",
                                                   body=UpdateRepoDomainsRequestBody(permit="read", deadline=future, description="one day")))
    shown = c.show_access_domain(ShowAccessDomainRequest(namespace="acme-shared", repository="app", access_domain="rival"))
    assert shown.deadline == future[:19] + "Z" and shown.description == "one day"
    r = c.delete_repo_domains(DeleteRepoDomainsRequest(namespace="acme-shared", repository="app", access_domain="rival"))
    assert r.status_code == 204
    assert requests.get(f"{rival_url}/v2/acme-shared/app/manifests/v1").status_code == 403
    gone = rival.list_shared_repos_details(ListSharedReposDetailsRequest(center="thirdparty"))
    assert not gone.body and gone.content_range.endswith("/0")


def test_login_secret_and_authorization_token(swr, tmp_path):
    reg, keys, _ = swr
    import base64
    c = client(reg, keys["acme"])
    for r in [c.create_secret(CreateSecretRequest(projectname="berth")),
              c.create_authorization_token(CreateAuthorizationTokenRequest())]:
        auth = base64.b64decode(r.auths[reg.host].auth).decode()
        user, secret = auth.split(":", 1)
        assert user.startswith("berth@") and r.x_swr_dockerlogin == f"docker login -u {user} -p {secret} {reg.host}"
        assert r.x_swr_expireat.endswith("Z")
    out = skopeo_push(reg.host, auth, "acme-temp/app:v1", tmp_path)
    assert out.returncode == 0, out.stderr
    # The key is bound to its key id.
    other = f"berth@T{'0' * 19}:{secret}"
    r = requests.get(f"{reg.anon_url}/service/token", params={"scope": "repository:acme-temp/app:pull"},
                     auth=tuple(other.split(":", 1)))
    assert r.status_code == 401


def test_quotas_overview_and_reports(swr):
    reg, keys, _ = swr
    c = client(reg, keys["acme"])
    # The SDK fills {project_id} from the credentials.
    q = c.list_quotas(ListQuotasRequest()).quotas
    assert q[0].quota_key == "namespace" and q[0].quota_limit == 1000 and q[0].used >= 1
    with pytest.raises(ClientRequestException) as e:
        client(reg, keys["acme"], project="0" * 32).list_quotas(ListQuotasRequest())
    assert e.value.status_code == 403
    before = c.show_domain_overview(ShowDomainOverviewRequest())
    c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="acme-usage")))
    url = f"http://acme:acme-pw@{reg.host}"
    m, _ = image(url, "acme-usage/app", layers=(b"z" * 4096,), tag="v1")
    requests.get(f"{url}/v2/acme-usage/app/blobs/{m['layers'][0]['digest']}")
    after = c.show_domain_overview(ShowDomainOverviewRequest())
    assert after.domain_name == "acme"
    assert after.namspace_num == before.namspace_num + 1 and after.repo_num == before.repo_num + 1
    assert after.image_num == before.image_num + 1 and after.store_space >= before.store_space + 4096
    deadline = __import__("time").time() + 5
    while after.downflow_size < before.downflow_size + 4096 and __import__("time").time() < deadline:
        after = c.show_domain_overview(ShowDomainOverviewRequest())
    assert after.downflow_size >= before.downflow_size + 4096
    report = lambda kind, frequency: [(p.date, p.value) for p in c.show_domain_resource_reports(
        ShowDomainResourceReportsRequest(resource_type=kind, frequency=frequency)).body]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    # Stored bytes: today's figure, and the figures recorded on earlier days.
    assert report("store", "daily") == [(today.isoformat(), after.store_space)]
    three_days_ago = (today - datetime.timedelta(days=3)).isoformat()
    db = reg.db()
    with db:
        db.execute("INSERT INTO kv (key, value, version) VALUES (?, ?, 1)",
                   (f"usage/acme/store/{three_days_ago}", b"123"))
    assert report("store", "daily") == [(three_days_ago, 123), (today.isoformat(), after.store_space)]
    monthly = report("store", "monthly")
    assert monthly[-1] == (today.replace(day=1).isoformat(), after.store_space)
    # Bytes served: one point per day for 30 days, today's holding what was served.
    daily = report("downflow", "daily")
    assert len(daily) == 30 and daily[-1][0] == today.isoformat() and daily[-1][1] >= 4096
    assert sum(v for _, v in daily) == after.downflow_size
    weekly = report("downflow", "weekly")
    monday = today - datetime.timedelta(days=today.weekday())
    assert weekly[-1][0] == monday.isoformat() and sum(v for _, v in weekly) == after.downflow_size
    with pytest.raises(ClientRequestException):
        c.show_domain_resource_reports(ShowDomainResourceReportsRequest(resource_type="cpu", frequency="daily"))
