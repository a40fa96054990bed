"""The authorization matrix: every /v2/ operation (continuing and finishing
another user's upload session and mounts included) and every management
operation of the SWR SDK, each by every kind of caller, with the outcome
each must get. Callers: anonymous, read/edit/manage grants on the
organization, the system policies FullAccess and ReadOnlyAccess,
OperateAccess through a group, FullAccess with a custom deny, a user of the
tenant with nothing, and another tenant.

The expected outcomes are written per kind of permission an operation
needs (CATEGORY), and each operation names its kind and its success code;
listings are also checked for what they show, so nothing leaks across
tenants or past permissions."""

import json

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateAuthorizationTokenRequest,
    CreateNamespaceAuthRequest,
    CreateNamespaceRequest,
    CreateNamespaceRequestBody,
    CreateRepoDomainsRequest,
    CreateRepoDomainsRequestBody,
    CreateRepoRequest,
    CreateRepoRequestBody,
    CreateRepoTagRequest,
    CreateRepoTagRequestBody,
    CreateImmutableRuleBody,
    CreateImmutableRuleRequest,
    CreateInstanceWebhookRequest,
    DeleteImmutableRuleRequest,
    ListImmutableRulesRequest,
    UpdateImmutableRuleBody,
    UpdateImmutableRuleRequest,
    CreateSecretRequest,
    CreateTriggerRequest,
    CreateTriggerRequestBody,
    CreateWebhookPolicyRequestBody,
    DeleteInstanceWebhookRequest,
    DeleteTriggerRequest,
    ListInstanceWebhookJobsRequest,
    ListInstanceWebhooksRequest,
    ListTriggersDetailsRequest,
    RuleSelector,
    ScopeRule,
    ShowInstanceWebhookRequest,
    ShowTriggerRequest,
    Target,
    UpdateInstanceWebhookRequest,
    UpdateTriggerRequest,
    UpdateTriggerRequestBody,
    UpdateWebhookPolicyRequestBody,
    CreateUserRepositoryAuthRequest,
    DeleteNamespaceAuthRequest,
    DeleteNamespacesRequest,
    DeleteRepoDomainsRequest,
    DeleteRepoRequest,
    DeleteRepoTagRequest,
    DeleteUserRepositoryAuthRequest,
    ListNamespacesRequest,
    ListQuotasRequest,
    ListRepoDetailsRequest,
    ListRepoDomainsRequest,
    ListReposDetailsRequest,
    ListRepositoryTagRequest,
    ListRepositoryTagsRequest,
    ListSharedRepoDetailsRequest,
    ListSharedReposDetailsRequest,
    ShowAccessDomainRequest,
    ShowDomainOverviewRequest,
    ShowDomainResourceReportsRequest,
    ShowNamespaceAuthRequest,
    ShowNamespaceRequest,
    ShowRepositoryRequest,
    ShowRepoTagRequest,
    ShowUserRepositoryAuthRequest,
    SwrClient,
    UpdateNamespaceAuthRequest,
    UpdateRepoDomainsRequest,
    UpdateRepoDomainsRequestBody,
    UpdateRepoRequest,
    UpdateRepoRequestBody,
    UpdateUserRepositoryAuthRequest,
    UserAuth,
)

from conftest import Registry, image, push_blob, sha256

# Users of tenant "acme" (plus "rival", another tenant, and anonymous).
USERS = ["reader", "editor", "manager", "full", "ro", "grouped", "denied", "none"]
GRANTS = {"reader": 1, "editor": 3, "manager": 7}
POLICIES = {"full": ["--policy", "SWR FullAccess"], "ro": ["--policy", "SWR ReadOnlyAccess"],
            "grouped": ["--group", "ops"], "denied": ["--policy", "SWR FullAccess", "--policy", "no-delete-in-mx"]}
CALLERS = ["anonymous", *USERS, "rival"]
OK = "ok"

# What each kind of caller gets, per kind of permission an operation needs
# ("ok" is the operation's own success code). /v2/ refuses visible-but-
# forbidden with 403 and asks anonymous callers to log in (401); the
# management API answers 404 for what the caller may not even see.
CATEGORY = {
    #               anonymous reader editor manager full ro   grouped denied none rival
    "v2-login":     (401,     OK,    OK,    OK,     OK,  OK,  OK,     OK,    OK,  OK),
    "v2-read":      (401,     OK,    OK,    OK,     OK,  OK,  OK,     OK,    403, 403),
    "v2-push":      (401,     403,   OK,    OK,     OK,  403, OK,     OK,    403, 403),
    "v2-delete":    (401,     403,   403,   OK,     OK,  403, OK,     403,   403, 403),
    "tenant":       (None,    OK,    OK,    OK,     OK,  OK,  OK,     OK,    OK,  OK),
    "read":         (None,    OK,    OK,    OK,     OK,  OK,  OK,     OK,    404, 404),
    "edit":         (None,    403,   OK,    OK,     OK,  403, OK,     OK,    404, 404),
    "manage":       (None,    403,   403,   OK,     OK,  403, OK,     OK,    404, 404),
    "delete":       (None,    403,   403,   OK,     OK,  403, OK,     403,   404, 404),
    "create-ns":    (None,    403,   403,   403,    OK,  403, OK,     OK,    403, OK),
}


def expected(category, caller, ok):
    got = CATEGORY[category][CALLERS.index(caller)]
    return ok if got == OK else got


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
    ids, keys, sessions = {}, {}, {}
    ids["target"] = reg.iam("user-create", "acme", "target", "--password", "target-pw")["id"]
    for user in USERS:
        ids[user] = reg.iam("user-create", "acme", user, "--password", f"{user}-pw", *POLICIES.get(user, []))["id"]
        keys[user] = (reg.iam("key-create", "acme", user), acme["project_id"])
    keys["acme"] = (reg.iam("key-create", "acme", "acme"), acme["project_id"])
    keys["rival"] = (reg.iam("key-create", "rival", "rival"), rival["project_id"])
    admin = sdk(reg, keys["acme"])
    url = f"http://acme:acme-pw@{reg.host}"
    # What the callers act on: mx/app, and for destructive operations one
    # target per caller (so one caller's success does not change another's).
    namespaces = ["mx"] + [f"mxd-{c}" for c in CALLERS]
    for ns in namespaces:
        admin.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace=ns)))
    for user, level in GRANTS.items():
        for ns in ("mx", f"mxd-{user}"):
            admin.create_namespace_auth(CreateNamespaceAuthRequest(namespace=ns, body=[
                UserAuth(user_id=ids[user], user_name=user, auth=level)]))
    _, digest = image(url, "mx/app", tag="v1")
    for caller in CALLERS:
        image(url, "mx/app", tag=f"del-{caller}", layers=(f"del-{caller}".encode(),))
        image(url, "mx/app", tag=f"mdel-{caller}", layers=(f"mdel-{caller}".encode(),))
        push_blob(url, "mx/app", f"blob-{caller}".encode())
        # An upload session acme opened, which each caller tries to continue.
        r = requests.post(f"{url}/v2/mx/app/blobs/uploads/")
        assert r.status_code == 202
        sessions[caller] = r.headers["Location"]
        image(url, f"mx/del-{caller}", tag="v1")
    image(url, "other/secret", tag="v1")
    # What the trigger and webhook operations act on.
    r = requests.post(f"{url}/berth/v1/tenants/acme/clusters",
                      json={"id": "prod", "name": "prod", "server": "https://kube.invalid:6443", "token": "t",
                            "organizations": ["mx"], "namespaces": ["default"]})
    assert r.status_code == 201, r.text
    admin.create_trigger(CreateTriggerRequest(namespace="mx", repository="app", body=trigger("shared")))
    ids["project"] = acme["project_id"]
    ids["policy"] = admin.create_instance_webhook(CreateInstanceWebhookRequest(
        instance_id=acme["project_id"], namespace_name="mx", body=webhook("shared"))).id
    ids["immutable"] = admin.create_immutable_rule(CreateImmutableRuleRequest(
        instance_id=acme["project_id"], namespace_name="mx", body=immutable("never-shared"))).id
    yield reg, keys, ids, digest, sessions
    reg.stop()


def trigger(name):
    """An image trigger on tags nobody pushes."""
    return CreateTriggerRequestBody(action="update", app_type="deployments", application="web", cluster_id="prod",
                                    cluster_ns="default", condition="never", enable="true", name=name,
                                    trigger_type="tag")


def webhook(name, cls=CreateWebhookPolicyRequestBody):
    """A webhook policy on tags nobody pushes."""
    return cls(name=name, enabled=True, event_types=["PUSH_ARTIFACT"],
               targets=[Target(type="http", address="https://hooks.invalid/x", address_type="internet")],
               scope_rules=[ScopeRule(
                   tag_selectors=[RuleSelector(kind="doublestar", decoration="matches", pattern="never-*")],
                   scope_selectors={"repository": [RuleSelector(kind="doublestar", decoration="repoMatches",
                                                                pattern="**")]},
                   repo_scope_mode="regular")])


def immutable(repo, cls=CreateImmutableRuleBody):
    """An immutable-tag rule on a repository nobody pushes to."""
    return cls(tag_selectors=[RuleSelector(kind="doublestar", decoration="matches", pattern="**")],
               scope_selectors={"repository": [RuleSelector(kind="doublestar", decoration="repoMatches", pattern=repo)]})


def own_immutable(c, ids, caller):
    """The id of the rule this caller created (else the shared one)."""
    try:
        listed = c.list_immutable_rules(ListImmutableRulesRequest(instance_id=ids["project"])).immutable_rules or []
    except ClientRequestException:
        listed = []
    mine = [r.id for r in listed if r.scope_selectors["repository"][0].pattern == f"never-{caller}"]
    return mine[0] if mine else ids["immutable"]


def sdk(reg, key):
    k, project = key
    return SwrClient.new_builder().with_credentials(BasicCredentials(k["ak"], k["sk"], project)) \
        .with_endpoints([reg.anon_url]).build()


def v2_url(reg, caller):
    if caller == "anonymous":
        return reg.anon_url
    if caller == "rival":
        return f"http://rival:rival-pw@{reg.host}"
    return f"http://{caller}%40acme:{caller}-pw@{reg.host}"


def v2_operations(reg, url, caller, digest, session):
    """(name, category, success code, call) for every /v2/ operation."""
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    manifest = requests.get(f"http://acme:acme-pw@{reg.host}/v2/mx/app/manifests/v1", headers=accept).content
    config = json.loads(manifest)["config"]["digest"]
    own = f"blob-{caller}".encode()
    return [
        ("base", "v2-login", 200, lambda: requests.get(f"{url}/v2/")),
        ("get manifest", "v2-read", 200, lambda: requests.get(f"{url}/v2/mx/app/manifests/v1", headers=accept)),
        ("head manifest", "v2-read", 200, lambda: requests.head(f"{url}/v2/mx/app/manifests/{digest}", headers=accept)),
        ("tags", "v2-read", 200, lambda: requests.get(f"{url}/v2/mx/app/tags/list")),
        ("get blob", "v2-read", 200, lambda: requests.get(f"{url}/v2/mx/app/blobs/{config}")),
        ("head blob", "v2-read", 200, lambda: requests.head(f"{url}/v2/mx/app/blobs/{config}")),
        ("referrers", "v2-read", 200, lambda: requests.get(f"{url}/v2/mx/app/referrers/{digest}")),
        ("start upload", "v2-push", 202, lambda: requests.post(f"{url}/v2/mx/app/blobs/uploads/")),
        ("monolithic upload", "v2-push", 201, lambda: requests.post(
            f"{url}/v2/mx/app/blobs/uploads/", params={"digest": sha256(b"x" + own)}, data=b"x" + own)),
        ("put manifest", "v2-push", 201, lambda: requests.put(
            f"{url}/v2/mx/app/manifests/push-{caller}", data=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})),
        ("continue upload", "v2-push", 202, lambda: requests.patch(
            f"{url}{session}", data=b"chunk-" + own,
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(own) + 5}"})),
        ("finish upload", "v2-push", 201, lambda: requests.put(
            f"{url}{session}", params={"digest": sha256(b"chunk-" + own)})),
        ("mount", "v2-push", 201, lambda: requests.post(
            f"{url}/v2/mx/app/blobs/uploads/", params={"mount": config, "from": f"mx/del-{caller}"})),
        ("delete manifest", "v2-delete", 202, lambda: requests.delete(f"{url}/v2/mx/app/manifests/del-{caller}")),
        ("delete blob", "v2-delete", 202, lambda: requests.delete(f"{url}/v2/mx/app/blobs/{sha256(own)}")),
    ]


@pytest.mark.parametrize("caller", CALLERS)
def test_registry_matrix(world, caller):
    reg, _, _, digest, sessions = world
    url = v2_url(reg, caller)
    got, want = {}, {}
    for name, category, ok, call in v2_operations(reg, url, caller, digest, sessions[caller]):
        got[name] = call().status_code
        want[name] = expected(category, caller, ok)
    assert got == want
    # The catalog lists only what the caller may pull, in its own tenant.
    r = requests.get(f"{url}/v2/_catalog")
    if caller == "anonymous":
        assert r.status_code == 401
        return
    listed = set(r.json()["repositories"])
    may_read = expected("v2-read", caller, 200) == 200
    assert ("mx/app" in listed) == may_read
    full_tenant = caller in ("full", "ro", "grouped", "denied")
    assert ("other/secret" in listed) == full_tenant
    if caller == "rival":
        assert listed == set()


def run(call):
    try:
        return call().status_code
    except ClientRequestException as e:
        return e.status_code


def manage_operations(c, caller, ids):
    """(name, category, success code, call) for every management operation."""
    target = [UserAuth(user_id=ids["target"], user_name="target", auth=1)]
    target3 = [UserAuth(user_id=ids["target"], user_name="target", auth=3)]
    ns, repo = "mx", "app"
    share = dict(namespace=ns, repository=repo, access_domain="third")
    tr = dict(namespace=ns, repository=repo)
    policy = dict(instance_id=ids["project"], namespace_name=ns)
    return [
        # Organizations
        ("list namespaces", "tenant", 200, lambda: c.list_namespaces(ListNamespacesRequest())),
        ("create namespace", "create-ns", 201, lambda: c.create_namespace(
            CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace=f"mxn-{caller}")))),
        ("show namespace", "read", 200, lambda: c.show_namespace(ShowNamespaceRequest(namespace=ns))),
        ("delete namespace", "manage", 204, lambda: c.delete_namespaces(DeleteNamespacesRequest(namespace=f"mxd-{caller}"))),
        # Organization grants
        ("grant on namespace", "manage", 201, lambda: c.create_namespace_auth(
            CreateNamespaceAuthRequest(namespace=ns, body=target))),
        ("show namespace grants", "read", 200, lambda: c.show_namespace_auth(ShowNamespaceAuthRequest(namespace=ns))),
        ("update namespace grant", "manage", 201, lambda: c.update_namespace_auth(
            UpdateNamespaceAuthRequest(namespace=ns, body=target3))),
        ("revoke namespace grant", "manage", 204, lambda: c.delete_namespace_auth(
            DeleteNamespaceAuthRequest(namespace=ns, body=[ids["target"]]))),
        # Repositories
        ("create repository", "edit", 201, lambda: c.create_repo(CreateRepoRequest(
            namespace=ns, body=CreateRepoRequestBody(repository=f"new-{caller}")))),
        ("show repository", "read", 200, lambda: c.show_repository(ShowRepositoryRequest(namespace=ns, repository=repo))),
        ("update repository", "edit", 201, lambda: c.update_repo(UpdateRepoRequest(
            namespace=ns, repository=repo, body=UpdateRepoRequestBody(description=f"by {caller}")))),
        ("delete repository", "delete", 204, lambda: c.delete_repo(DeleteRepoRequest(namespace=ns, repository=f"del-{caller}"))),
        ("list repositories v2", "tenant", 200, lambda: c.list_repos_details(ListReposDetailsRequest())),
        ("list repositories v3", "tenant", 200, lambda: c.list_repo_details(ListRepoDetailsRequest())),
        # Tags
        ("list tags v2", "read", 200, lambda: c.list_repository_tags(ListRepositoryTagsRequest(namespace=ns, repository=repo))),
        ("list tags v3", "read", 200, lambda: c.list_repository_tag(ListRepositoryTagRequest(namespace=ns, repository=repo))),
        ("show tag", "read", 200, lambda: c.show_repo_tag(ShowRepoTagRequest(namespace=ns, repository=repo, tag="v1"))),
        ("create tag", "edit", 201, lambda: c.create_repo_tag(CreateRepoTagRequest(
            namespace=ns, repository=repo, body=CreateRepoTagRequestBody(source_tag="v1", destination_tag=f"copy-{caller}")))),
        ("delete tag", "delete", 204, lambda: c.delete_repo_tag(DeleteRepoTagRequest(
            namespace=ns, repository=repo, tag=f"mdel-{caller}"))),
        # Repository grants
        ("grant on repository", "manage", 201, lambda: c.create_user_repository_auth(
            CreateUserRepositoryAuthRequest(namespace=ns, repository=repo, body=target))),
        ("show repository grants", "read", 200, lambda: c.show_user_repository_auth(
            ShowUserRepositoryAuthRequest(namespace=ns, repository=repo))),
        ("update repository grant", "manage", 201, lambda: c.update_user_repository_auth(
            UpdateUserRepositoryAuthRequest(namespace=ns, repository=repo, body=target3))),
        ("revoke repository grant", "manage", 204, lambda: c.delete_user_repository_auth(
            DeleteUserRepositoryAuthRequest(namespace=ns, repository=repo, body=[ids["target"]]))),
        # Sharing (access domains) and shared repositories
        ("share", "manage", 201, lambda: c.create_repo_domains(CreateRepoDomainsRequest(
            namespace=ns, repository=repo, body=CreateRepoDomainsRequestBody(
                access_domain="third", permit="read", deadline="forever")))),
        ("list shares", "read", 200, lambda: c.list_repo_domains(ListRepoDomainsRequest(namespace=ns, repository=repo))),
        ("show share", "read", 200, lambda: c.show_access_domain(ShowAccessDomainRequest(**share))),
        ("update share", "manage", 201, lambda: c.update_repo_domains(UpdateRepoDomainsRequest(
            **share, body=UpdateRepoDomainsRequestBody(permit="read", deadline="forever", description=caller)))),
        ("unshare", "manage", 204, lambda: c.delete_repo_domains(DeleteRepoDomainsRequest(**share))),
        ("shared repositories v2", "tenant", 200, lambda: c.list_shared_repos_details(
            ListSharedReposDetailsRequest(center="self"))),
        ("shared repositories v3", "tenant", 200, lambda: c.list_shared_repo_details(
            ListSharedRepoDetailsRequest(shared_by="self"))),
        # Image triggers (SWR shared edition)
        ("create trigger", "manage", 201, lambda: c.create_trigger(CreateTriggerRequest(**tr, body=trigger(f"t-{caller}")))),
        ("list triggers", "manage", 200, lambda: c.list_triggers_details(ListTriggersDetailsRequest(**tr))),
        ("show trigger", "manage", 200, lambda: c.show_trigger(ShowTriggerRequest(**tr, trigger="shared"))),
        ("update trigger", "manage", 201, lambda: c.update_trigger(UpdateTriggerRequest(
            **tr, trigger="shared", body=UpdateTriggerRequestBody(enable="true")))),
        ("delete trigger", "manage", 204, lambda: c.delete_trigger(DeleteTriggerRequest(**tr, trigger=f"t-{caller}"))),
        # Webhook policies (SWR enterprise edition; Berth's instance is the tenant)
        ("create webhook", "manage", 201, lambda: c.create_instance_webhook(CreateInstanceWebhookRequest(
            **policy, body=webhook(f"w-{caller}")))),
        ("show webhook", "manage", 200, lambda: c.show_instance_webhook(ShowInstanceWebhookRequest(
            **policy, policy_id=ids["policy"]))),
        ("update webhook", "manage", 200, lambda: c.update_instance_webhook(UpdateInstanceWebhookRequest(
            **policy, policy_id=ids["policy"], body=webhook("shared", UpdateWebhookPolicyRequestBody)))),
        ("webhook jobs", "manage", 200, lambda: c.list_instance_webhook_jobs(ListInstanceWebhookJobsRequest(
            **policy, policy_id=ids["policy"]))),
        ("delete webhook", "manage", 204, lambda: c.delete_instance_webhook(DeleteInstanceWebhookRequest(
            **policy, policy_id=own_policy(c, ids, caller)))),
        # Immutable-tag rules (SWR enterprise edition)
        ("create immutable rule", "manage", 201, lambda: c.create_immutable_rule(CreateImmutableRuleRequest(
            **policy, body=immutable(f"never-{caller}")))),
        ("update immutable rule", "manage", 200, lambda: c.update_immutable_rule(UpdateImmutableRuleRequest(
            **policy, immutable_rule_id=ids["immutable"], body=immutable("never-shared", UpdateImmutableRuleBody)))),
        ("delete immutable rule", "manage", 204, lambda: c.delete_immutable_rule(DeleteImmutableRuleRequest(
            **policy, immutable_rule_id=own_immutable(c, ids, caller)))),
        # The caller's account
        ("login secret", "tenant", 200, lambda: c.create_secret(CreateSecretRequest(projectname="berth"))),
        ("authorization token", "tenant", 200, lambda: c.create_authorization_token(CreateAuthorizationTokenRequest())),
        ("quotas", "tenant", 200, lambda: c.list_quotas(ListQuotasRequest())),
        ("overview", "tenant", 200, lambda: c.show_domain_overview(ShowDomainOverviewRequest())),
        ("reports", "tenant", 200, lambda: c.show_domain_resource_reports(
            ShowDomainResourceReportsRequest(resource_type="downflow", frequency="daily"))),
    ]


def own_policy(c, ids, caller):
    """The id of the webhook policy this caller created (else the shared one,
    which it may not delete either)."""
    try:
        listed = c.list_instance_webhooks(ListInstanceWebhooksRequest(instance_id=ids["project"])).policies or []
    except ClientRequestException:
        listed = []
    mine = [p.id for p in listed if p.name == f"w-{caller}"]
    return mine[0] if mine else ids["policy"]


@pytest.mark.parametrize("caller", [c for c in CALLERS if c != "anonymous"])
def test_management_matrix(world, caller):
    reg, keys, ids, _, _ = world
    c = sdk(reg, keys[caller])
    got, want = {}, {}
    for name, category, ok, call in manage_operations(c, caller, ids):
        got[name] = run(call)
        want[name] = expected(category, caller, ok)
    assert got == want
    # Listings show what the caller may read, and nothing of another tenant.
    may_read = expected("read", caller, 200) == 200
    names = {n.name for n in c.list_namespaces(ListNamespacesRequest()).namespaces}
    assert ("mx" in names) == may_read
    repos = {f"{r.namespace}/{r.name}" for r in c.list_repos_details(ListReposDetailsRequest()).body or []}
    assert ("mx/app" in repos) == may_read
    if caller == "rival":
        assert names == {"mxn-rival"} and repos == set()


def test_unsigned_management_calls_are_refused(world):
    reg, _, _, _, _ = world
    paths = [("GET", "/v2/manage/namespaces"), ("POST", "/v2/manage/namespaces"),
             ("GET", "/v2/manage/namespaces/mx"), ("DELETE", "/v2/manage/namespaces/mx"),
             ("GET", "/v2/manage/namespaces/mx/access"), ("POST", "/v2/manage/namespaces/mx/access"),
             ("PATCH", "/v2/manage/namespaces/mx/access"), ("DELETE", "/v2/manage/namespaces/mx/access"),
             ("POST", "/v2/manage/namespaces/mx/repos"), ("GET", "/v2/manage/namespaces/mx/repos/app"),
             ("PATCH", "/v2/manage/namespaces/mx/repos/app"), ("DELETE", "/v2/manage/namespaces/mx/repos/app"),
             ("GET", "/v2/manage/repos"), ("GET", "/v3/manage/repos"),
             ("GET", "/v2/manage/namespaces/mx/repos/app/tags"), ("GET", "/v3/manage/namespaces/mx/repos/app/tags"),
             ("POST", "/v2/manage/namespaces/mx/repos/app/tags"), ("GET", "/v2/manage/namespaces/mx/repos/app/tags/v1"),
             ("DELETE", "/v2/manage/namespaces/mx/repos/app/tags/v1"),
             ("GET", "/v2/manage/namespaces/mx/repos/app/access"), ("POST", "/v2/manage/namespaces/mx/repos/app/access"),
             ("GET", "/v2/manage/namespaces/mx/repositories/app/access-domains"),
             ("POST", "/v2/manage/namespaces/mx/repositories/app/access-domains"),
             ("DELETE", "/v2/manage/namespaces/mx/repositories/app/access-domains/third"),
             ("GET", "/v2/manage/shared-repositories"), ("GET", "/v3/manage/shared-repositories"),
             ("POST", "/v2/manage/utils/secret"), ("POST", "/v2/manage/utils/authorizationtoken"),
             ("GET", "/v2/manage/projects/x/quotas"), ("GET", "/v2/manage/overview"),
             ("GET", "/v2/manage/reports/store/daily"), ("GET", "/berth/v1/whoami"),
             ("GET", "/v2/manage/namespaces/mx/repos/app/triggers"), ("POST", "/v2/manage/namespaces/mx/repos/app/triggers"),
             ("GET", "/v2/manage/namespaces/mx/repos/app/triggers/shared"),
             ("PATCH", "/v2/manage/namespaces/mx/repos/app/triggers/shared"),
             ("DELETE", "/v2/manage/namespaces/mx/repos/app/triggers/shared"),
             ("GET", "/berth/v1/tenants/acme/clusters"), ("POST", "/berth/v1/tenants/acme/clusters"),
             ("DELETE", "/berth/v1/tenants/acme/clusters/prod")]
    for method, path in paths:
        r = requests.request(method, f"{reg.anon_url}{path}")
        assert r.status_code == 401 and r.json()["errorCode"] == "SVCSTG.SWR.4010001", (method, path)
    # Nothing changed: the organization and its repository are still there.
    c = sdk(reg, world[1]["acme"])
    assert c.show_repository(ShowRepositoryRequest(namespace="mx", repository="app")).status_code == 200
