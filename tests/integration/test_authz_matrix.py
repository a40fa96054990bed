"""The authorization matrix: every kind of caller against the registry
(/v2/) and management operations on one organization, with the outcome
each must get. Grants (read/edit/manage), system policies (FullAccess,
ReadOnlyAccess, OperateAccess through a group), a custom deny policy, a
user with nothing, another tenant and anonymous callers."""

import json

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateNamespaceAuthRequest,
    CreateNamespaceRequest,
    CreateNamespaceRequestBody,
    CreateRepoDomainsRequest,
    CreateRepoDomainsRequestBody,
    CreateRepoTagRequest,
    CreateRepoTagRequestBody,
    CreateUserRepositoryAuthRequest,
    DeleteRepoTagRequest,
    ShowNamespaceRequest,
    ShowRepositoryRequest,
    SwrClient,
    UpdateRepoRequest,
    UpdateRepoRequestBody,
    UserAuth,
)

from conftest import Registry, image

ROLES = ["reader", "editor", "manager", "full", "ro", "grouped", "denied", "none"]

# role -> (pull, push, delete) on /v2/ for mx/app
V2 = {
    "anonymous": (401, 401, 401),
    "reader": (200, 403, 403),
    "editor": (200, 202, 403),
    "manager": (200, 202, 202),
    "rival": (403, 403, 403),
    "full": (200, 202, 202),
    "ro": (200, 403, 403),
    "grouped": (200, 202, 202),
    "denied": (200, 202, 403),
    "none": (403, 403, 403),
}

# role -> outcome of each management operation (status code)
MANAGE = {
    #            show_ns show_repo update tag  del_tag grant share create_ns
    "reader":   (200,    200,      403,   403, 403,    403,  403,  403),
    "editor":   (200,    200,      201,   201, 403,    403,  403,  403),
    "manager":  (200,    200,      201,   201, 204,    201,  201,  403),
    "full":     (200,    200,      201,   201, 204,    201,  201,  201),
    "ro":       (200,    200,      403,   403, 403,    403,  403,  403),
    "grouped":  (200,    200,      201,   201, 204,    201,  201,  201),
    "denied":   (200,    200,      201,   201, 403,    201,  201,  201),
    "none":     (404,    404,      404,   404, 404,    404,  404,  403),
    "rival":    (404,    404,      404,   404, 404,    404,  404,  201),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("matrix") / "data").start()
    acme = reg.iam("tenant-create", "acme", "--password", "acme-pw")
    rival = reg.iam("tenant-create", "rival", "--password", "rival-pw")
    # Grants and shares made by the callers under test go to bystanders.
    reg.iam("tenant-create", "third", "--password", "third-pw")
    policy = tmp_path_factory.mktemp("policy") / "deny.json"
    policy.write_text(json.dumps({"Version": "1.1", "Statement": [
        {"Effect": "Deny", "Action": ["swr:repository:delete"], "Resource": ["swr:*:*:repository:mx/*"]}]}))
    reg.iam("policy-create", "acme", "no-delete-in-mx", str(policy))
    reg.iam("group-create", "acme", "ops", "--policy", "SWR OperateAccess")
    extra = {"full": ["--policy", "SWR FullAccess"], "ro": ["--policy", "SWR ReadOnlyAccess"],
             "grouped": ["--group", "ops"], "denied": ["--policy", "SWR FullAccess", "--policy", "no-delete-in-mx"]}
    ids, keys = {}, {}

    ids["target"] = reg.iam("user-create", "acme", "target", "--password", "target-pw")["id"]
    for role in ROLES:
        ids[role] = reg.iam("user-create", "acme", role, "--password", f"{role}-pw", *extra.get(role, []))["id"]
        keys[role] = (reg.iam("key-create", "acme", role), acme["project_id"])
    keys["acme"] = (reg.iam("key-create", "acme", "acme"), acme["project_id"])
    keys["rival"] = (reg.iam("key-create", "rival", "rival"), rival["project_id"])
    admin = sdk(reg, keys["acme"])
    admin.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="mx")))
    admin.create_namespace_auth(CreateNamespaceAuthRequest(namespace="mx", body=[
        UserAuth(user_id=ids["reader"], user_name="reader", auth=1),
        UserAuth(user_id=ids["editor"], user_name="editor", auth=3),
        UserAuth(user_id=ids["manager"], user_name="manager", auth=7)]))
    url = f"http://acme:acme-pw@{reg.host}"
    image(url, "mx/app", tag="v1")
    for role in [*V2, *MANAGE]:
        image(url, "mx/app", tag=f"del-{role}")
        image(url, "mx/app", tag=f"mdel-{role}")
    yield reg, keys, ids
    reg.stop()


def sdk(reg, key):
    k, project = key
    return SwrClient.new_builder().with_credentials(BasicCredentials(k["ak"], k["sk"], project)) \
        .with_endpoints([reg.anon_url]).build()


def v2_url(reg, role):
    if role == "anonymous":
        return reg.anon_url
    if role == "rival":
        return f"http://rival:rival-pw@{reg.host}"
    return f"http://{role}%40acme:{role}-pw@{reg.host}"


@pytest.mark.parametrize("role", list(V2))
def test_registry_matrix(world, role):
    reg, _, _ = world
    url = v2_url(reg, role)
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    pull = requests.get(f"{url}/v2/mx/app/manifests/v1", headers=accept).status_code
    tags = requests.get(f"{url}/v2/mx/app/tags/list").status_code
    push = requests.post(f"{url}/v2/mx/app/blobs/uploads/").status_code
    delete = requests.delete(f"{url}/v2/mx/app/manifests/del-{role}").status_code
    assert (pull, push, delete) == V2[role]
    assert tags == pull


@pytest.mark.parametrize("role", list(MANAGE))
def test_management_matrix(world, role):
    reg, keys, ids = world
    c = sdk(reg, keys[role])

    def run(call):
        try:
            return call().status_code
        except ClientRequestException as e:
            return e.status_code

    got = (
        run(lambda: c.show_namespace(ShowNamespaceRequest(namespace="mx"))),
        run(lambda: c.show_repository(ShowRepositoryRequest(namespace="mx", repository="app"))),
        run(lambda: c.update_repo(UpdateRepoRequest(namespace="mx", repository="app",
                                                    body=UpdateRepoRequestBody(description=f"by {role}")))),
        run(lambda: c.create_repo_tag(CreateRepoTagRequest(namespace="mx", repository="app", body=CreateRepoTagRequestBody(
            source_tag="v1", destination_tag=f"copy-{role}")))),
        run(lambda: c.delete_repo_tag(DeleteRepoTagRequest(namespace="mx", repository="app", tag=f"mdel-{role}"))),
        run(lambda: c.create_user_repository_auth(CreateUserRepositoryAuthRequest(
            namespace="mx", repository="app", body=[UserAuth(user_id=ids["target"], user_name="target", auth=1)]))),
        run(lambda: c.create_repo_domains(CreateRepoDomainsRequest(namespace="mx", repository="app", body=CreateRepoDomainsRequestBody(
            access_domain="third", permit="read", deadline="forever")))),
        run(lambda: c.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace=f"mx-{role}")))),
    )
    expected = MANAGE[role]
    # Sharing with a tenant it is already shared with is a conflict, which
    # is only answered once the caller was found allowed to share.
    got = tuple(201 if (g, e) == (409, 201) else g for g, e in zip(got, expected))
    assert got == expected


def test_unsigned_management_calls_are_refused(world):
    reg, _, _ = world
    for method, path in [("GET", "/v2/manage/namespaces"), ("POST", "/v2/manage/namespaces"),
                         ("GET", "/v2/manage/namespaces/mx/repos/app"), ("DELETE", "/v2/manage/namespaces/mx"),
                         ("GET", "/v2/manage/repos"), ("POST", "/v2/manage/utils/secret")]:
        r = requests.request(method, f"{reg.anon_url}{path}")
        assert r.status_code == 401 and r.json()["errorCode"] == "SVCSTG.SWR.4010001", path
