"""Berth's admin API (/berth/v1): tenants, users, groups, policies and
access keys over HTTP — with a password (Basic) and with an AK/SK signed by
the official Huawei Cloud SDK's signer — and what each identity may do.
Keys it hands out are then used by real clients: the SWR SDK and skopeo."""

import base64
import datetime
import hashlib
import hmac
import json
import subprocess
import time

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkswr.v2 import CreateSecretRequest, ListNamespacesRequest, SwrClient

from conftest import ADMIN, BERTH, Registry, image, skopeo_push


class Api:
    """Calls /berth/v1 as one identity: Basic (user, password) or an AK/SK."""

    def __init__(self, reg, basic=None, key=None, prefix="/berth/v1"):
        self.reg, self.basic, self.key, self.prefix = reg, basic, key, prefix

    def __call__(self, method, path, body=None, query=()):
        url = f"{self.reg.anon_url}{self.prefix}{path}"
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"}
        if self.key:
            req = SdkRequest(method=method, schema="http", host=self.reg.host, resource_path=f"{self.prefix}{path}",
                             query_params=list(query), header_params=dict(headers), body=data)
            Signer(BasicCredentials(self.key[0], self.key[1])).sign(req)
            headers = req.header_params
            return requests.request(method, url, params=list(query), data=data, headers=headers)
        return requests.request(method, url, params=list(query), data=data, headers=headers, auth=self.basic)


def code(r):
    return r.json().get("errorCode") if r.headers.get("Content-Type", "").startswith("application/json") else None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("admin") / "data").start()
    root = Api(reg, basic=ADMIN)
    acme = root("POST", "/tenants", {"name": "acme", "password": "acme-pw"}).json()
    rival = root("POST", "/tenants", {"name": "rival", "password": "rival-pw"}).json()
    yield reg, root, acme, rival
    reg.stop()


def test_bootstrap_administrator_manages_tenants(world):
    reg, root, acme, _ = world
    me = root("GET", "/whoami").json()
    assert me["system_admin"] and me["user"]["name"] == "admin" and "password" not in me["user"]
    names = [t["name"] for t in root("GET", "/tenants").json()["tenants"]]
    assert names == ["acme", "admin", "rival"]
    assert len(acme["project_id"]) == 32
    # A generated password is given once, and works.
    made = root("POST", "/tenants", {"name": "gen"})
    assert made.status_code == 201
    pw = made.json()["password"]
    assert Api(reg, basic=("gen", pw))("GET", "/whoami").status_code == 200
    assert "password" not in root("GET", "/tenants/gen").json()
    # Duplicates and bad names are refused in SWR's error format.
    r = root("POST", "/tenants", {"name": "acme"})
    assert r.status_code == 409 and code(r) == "SVCSTG.SWR.4090001"
    r = root("POST", "/tenants", {"name": "no spaces"})
    assert r.status_code == 400 and "not a valid tenant name" in r.json()["errorMsg"]
    r = root("POST", "/tenants", {"name": "x", "quota": 3})
    assert r.status_code == 400 and "unknown field" in r.json()["errorMsg"]
    # A tenant's own administrator is not a system administrator.
    acme_admin = Api(reg, basic=("acme", "acme-pw"))
    assert acme_admin("GET", "/tenants").status_code == 403
    assert acme_admin("POST", "/tenants", {"name": "sneaky"}).status_code == 403
    assert acme_admin("GET", "/tenants/rival").status_code == 404
    assert acme_admin("GET", "/tenants/acme").status_code == 200


def test_authentication_is_required_and_checked(world):
    reg, _, _, _ = world
    r = requests.get(f"{reg.anon_url}/berth/v1/whoami")
    assert r.status_code == 401 and code(r) == "SVCSTG.SWR.4010001"
    assert r.headers["WWW-Authenticate"] == 'Basic realm="berth"'
    # The SWR API asks for signatures, not passwords.
    assert "WWW-Authenticate" not in requests.get(f"{reg.anon_url}/v2/manage/namespaces").headers
    assert Api(reg, basic=("admin", "wrong"))("GET", "/whoami").status_code == 401
    assert Api(reg, basic=("nobody@acme", "x"))("GET", "/whoami").status_code == 401
    assert Api(reg, key=("NOSUCHKEY00000000000", "x" * 40))("GET", "/whoami").status_code == 401
    assert Api(reg, basic=ADMIN)("GET", "/nothing-here").status_code == 404


def test_users_keys_and_real_clients(world, tmp_path):
    reg, _, acme, _ = world
    acme_admin = Api(reg, basic=("acme", "acme-pw"))
    r = acme_admin("POST", "/tenants/acme/users", {"name": "dev", "password": "dev-pw", "policies": ["SWR OperateAccess"]})
    assert r.status_code == 201, r.text
    dev_id = r.json()["id"]
    assert "password" not in r.json()
    dev = Api(reg, basic=("dev@acme", "dev-pw"))
    # The user creates its own access key; the secret comes back once.
    made = dev("POST", "/tenants/acme/users/dev/keys", {"description": "laptop"})
    assert made.status_code == 201, made.text
    ak, sk = made.json()["access"], made.json()["secret"]
    listed = dev("GET", "/tenants/acme/users/dev/keys").json()["credentials"]
    assert [(k["access"], k["status"], k["description"]) for k in listed] == [(ak, "active", "laptop")]
    assert sk not in json.dumps(listed)
    # The same key signs admin calls (SDK signer) and the SWR SDK's calls.
    signed = Api(reg, key=(ak, sk))
    assert signed("GET", "/whoami").json()["user"]["id"] == dev_id
    swr = SwrClient.new_builder().with_credentials(BasicCredentials(ak, sk, acme["project_id"])) \
        .with_endpoints([reg.anon_url]).build()
    assert swr.list_namespaces(ListNamespacesRequest()).status_code == 200
    # ...and logs skopeo in with SWR's long-term password.
    password = hmac.new(sk.encode(), ak.encode(), hashlib.sha256).hexdigest()
    r = skopeo_push(reg.host, f"berth@{ak}:{password}", "acme-dev/app:v1", tmp_path)
    assert r.returncode == 0, r.stderr
    # A temporary login for a chosen time (15 minutes to 24 hours, as SWR).
    manage = Api(reg, key=(ak, sk), prefix="/v2/manage")
    r = manage("POST", "/utils/secret", query=[("duration_seconds", "900")])
    assert r.status_code == 200, r.text
    expires = datetime.datetime.fromisoformat(r.headers["X-Swr-Expireat"].replace("Z", "+00:00"))
    left = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 880 <= left <= 905, left
    # The login itself (a signed token) expires then, not in 6 hours.
    secret = base64.b64decode(r.json()["auths"][reg.host]["auth"]).decode().split(":", 1)[1]
    payload = secret.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == 900
    for bad in ("60", "86401", "soon"):
        r = manage("POST", "/utils/secret", query=[("duration_seconds", bad)])
        assert r.status_code == 400 and "duration_seconds" in r.json()["errorMsg"], bad
    # At most two keys per user, as IAM.
    assert dev("POST", "/tenants/acme/users/dev/keys").status_code == 201
    r = dev("POST", "/tenants/acme/users/dev/keys")
    assert r.status_code == 409 and "2 access keys" in r.json()["errorMsg"]
    # Disabling the key stops the SDK, the admin API and the key's temporary
    # docker logins at once; enabling restores them.
    temp = base64.b64decode(swr.create_secret(CreateSecretRequest()).auths[reg.host].auth).decode().split(":", 1)
    token = lambda: requests.get(f"{reg.anon_url}/service/token", params={"scope": "repository:acme-dev/app:pull"},
                                 auth=tuple(temp)).status_code
    assert token() == 200
    assert dev("PATCH", f"/tenants/acme/users/dev/keys/{ak}", {"status": "inactive"}).json()["status"] == "inactive"
    assert token() == 401
    with pytest.raises(ClientRequestException) as e:
        swr.list_namespaces(ListNamespacesRequest())
    assert e.value.status_code == 401
    assert signed("GET", "/whoami").status_code == 401
    assert dev("PATCH", f"/tenants/acme/users/dev/keys/{ak}", {"status": "gone"}).status_code == 400
    assert dev("PATCH", f"/tenants/acme/users/dev/keys/{ak}", {"status": "active"}).status_code == 200
    assert swr.list_namespaces(ListNamespacesRequest()).status_code == 200
    assert token() == 200
    # Deleting it ends it.
    assert dev("DELETE", f"/tenants/acme/users/dev/keys/{ak}").status_code == 204
    assert signed("GET", "/whoami").status_code == 401
    assert token() == 401
    assert dev("DELETE", f"/tenants/acme/users/dev/keys/{ak}").status_code == 404


def test_what_a_plain_user_may_do(world):
    reg, _, _, _ = world
    acme_admin = Api(reg, basic=("acme", "acme-pw"))
    for name in ("alice", "bob"):
        assert acme_admin("POST", "/tenants/acme/users", {"name": name, "password": f"{name}-pw"}).status_code == 201
    alice = Api(reg, basic=("alice@acme", "alice-pw"))
    # Not an administrator: no listing, creating, or granting itself policies.
    assert alice("GET", "/tenants/acme/users").status_code == 403
    assert alice("POST", "/tenants/acme/users", {"name": "eve"}).status_code == 403
    r = alice("PATCH", "/tenants/acme/users/alice", {"policies": ["SWR FullAccess"]})
    assert r.status_code == 403
    assert alice("DELETE", "/tenants/acme/users/alice").status_code == 403
    # Others' keys are not hers; another tenant does not exist for her.
    assert alice("POST", "/tenants/acme/users/bob/keys").status_code == 403
    assert alice("GET", "/tenants/rival/users/rival/keys").status_code == 404
    # Her own password she changes.
    assert alice("PATCH", "/tenants/acme/users/alice", {"password": "alice-new"}).status_code == 200
    assert alice("GET", "/whoami").status_code == 401
    assert Api(reg, basic=("alice@acme", "alice-new"))("GET", "/whoami").status_code == 200
    # The other tenant's administrator sees nothing of acme.
    rival = Api(reg, basic=("rival", "rival-pw"))
    assert rival("GET", "/tenants/acme/users").status_code == 404
    assert rival("PATCH", "/tenants/acme/users/alice", {"disabled": True}).status_code == 404
    assert rival("POST", "/tenants/acme/users/alice/keys").status_code == 404


def test_disabling_and_deleting_users(world):
    reg, root, _, _ = world
    acme_admin = Api(reg, basic=("acme", "acme-pw"))
    assert acme_admin("POST", "/tenants/acme/users", {"name": "temp", "password": "temp-pw",
                                                      "policies": ["SWR FullAccess"]}).status_code == 201
    temp = Api(reg, basic=("temp@acme", "temp-pw"))
    key = temp("POST", "/tenants/acme/users/temp/keys").json()
    image(f"http://temp%40acme:temp-pw@{reg.host}", "acme-temp/app", tag="v1")
    issued = requests.get(f"{reg.anon_url}/service/token", params={"scope": "repository:acme-temp/app:pull"},
                          auth=("temp@acme", "temp-pw")).json()["token"]
    pull = lambda: requests.get(f"{reg.anon_url}/v2/acme-temp/app/manifests/v1",
                                headers={"Authorization": f"Bearer {issued}",
                                         "Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code
    assert pull() == 200
    assert acme_admin("PATCH", "/tenants/acme/users/temp", {"disabled": True}).json()["disabled"] is True
    # A token issued before stops working within seconds, not at its expiry.
    deadline = time.time() + 8
    while pull() == 200 and time.time() < deadline:
        time.sleep(0.2)
    assert pull() == 401
    token = requests.get(f"{reg.anon_url}/service/token", params={"scope": "repository:acme-temp/app:pull"},
                         auth=("temp@acme", "temp-pw"))
    assert token.status_code == 401
    assert Api(reg, key=(key["access"], key["secret"]))("GET", "/whoami").status_code == 401
    assert acme_admin("PATCH", "/tenants/acme/users/temp", {"disabled": False}).status_code == 200
    assert temp("GET", "/whoami").status_code == 200
    deadline = time.time() + 8
    while pull() != 200 and time.time() < deadline:
        time.sleep(0.2)
    assert pull() == 200
    # Deleting removes the user and its keys.
    assert acme_admin("DELETE", "/tenants/acme/users/temp").status_code == 204
    assert acme_admin("GET", "/tenants/acme/users/temp").status_code == 404
    assert temp("GET", "/whoami").status_code == 401
    db = reg.db()
    assert db.execute("SELECT count(*) FROM kv WHERE key = ?", (f"iam/ak/{key['access']}",)).fetchone()[0] == 0
    # The account user cannot be deleted, disabled or stripped of its role.
    assert acme_admin("DELETE", "/tenants/acme/users/acme").status_code == 400
    assert acme_admin("PATCH", "/tenants/acme/users/acme", {"disabled": True}).status_code == 400
    assert acme_admin("PATCH", "/tenants/acme/users/acme", {"policies": []}).status_code == 400
    # The system administrator manages any tenant's users.
    assert root("GET", "/tenants/acme/users").status_code == 200
    # Mutating admin calls are audited like management calls.
    events = [json.loads(v) for (v,) in db.execute("SELECT value FROM kv WHERE key LIKE 'audit/acme/%'")]
    ops = {(e["operation"], e["status"]) for e in events}
    assert ("DELETE /berth/v1/tenants/acme/users/temp", 204) in ops
    assert ("DELETE /berth/v1/tenants/acme/users/acme", 400) in ops


def test_groups_and_custom_policies_decide_registry_access(world):
    reg, _, _, _ = world
    a = Api(reg, basic=("acme", "acme-pw"))
    deny = {"Version": "1.1", "Statement": [
        {"Effect": "Deny", "Action": ["swr:repository:delete"], "Resource": ["swr:*:*:repository:acme-pol/*"]}]}
    r = a("POST", "/tenants/acme/policies", {"name": "no-delete", "description": "keep images", "document": deny})
    assert r.status_code == 201, r.text
    assert a("POST", "/tenants/acme/policies", {"name": "no-delete", "document": deny}).status_code == 409
    assert a("POST", "/tenants/acme/policies", {"name": "SWR FullAccess", "document": deny}).status_code == 400
    bad = a("POST", "/tenants/acme/policies", {"name": "bad", "document": {"Statement": [{"Effect": "Maybe"}]}})
    assert bad.status_code == 400 and "invalid policy document" in bad.json()["errorMsg"]
    listed = a("GET", "/tenants/acme/policies").json()
    assert [p["name"] for p in listed["custom"]] == ["no-delete"]
    assert {p["name"] for p in listed["system"]} == {"SWR FullAccess", "SWR OperateAccess", "SWR ReadOnlyAccess"}
    assert a("POST", "/tenants/acme/groups", {"name": "ops", "policies": ["SWR OperateAccess"]}).status_code == 201
    assert a("POST", "/tenants/acme/groups", {"name": "x", "policies": ["missing"]}).status_code == 400
    assert a("POST", "/tenants/acme/users", {"name": "op", "password": "op-pw", "groups": ["ops"]}).status_code == 201
    assert a("POST", "/tenants/acme/users", {"name": "y", "groups": ["missing"]}).status_code == 400
    assert a("GET", "/tenants/acme/groups/ops").json()["members"] == ["op"]
    url = f"http://op%40acme:op-pw@{reg.host}"
    _, d1 = image(url, "acme-pol/app", tag="v1")
    # The group's policy lets "op" delete...
    assert requests.delete(f"{url}/v2/acme-pol/app/manifests/{d1}").status_code == 202
    # ...until the deny policy joins the group (deny wins), and again after it goes.
    _, d2 = image(url, "acme-pol/app", tag="v2", layers=(b"other",))
    assert a("PATCH", "/tenants/acme/groups/ops", {"policies": ["SWR OperateAccess", "no-delete"]}).status_code == 200
    assert requests.delete(f"{url}/v2/acme-pol/app/manifests/{d2}").status_code == 403
    assert a("DELETE", "/tenants/acme/policies/no-delete").status_code == 204
    assert requests.delete(f"{url}/v2/acme-pol/app/manifests/{d2}").status_code == 202
    # Deleting a policy detaches it: one made later under the name is not
    # attached to the group by accident.
    assert a("GET", "/tenants/acme/groups/ops").json()["policies"] == ["SWR OperateAccess"]
    assert a("POST", "/tenants/acme/policies", {"name": "no-delete", "document": deny}).status_code == 201
    _, d3 = image(url, "acme-pol/app", tag="v3", layers=(b"third",))
    assert requests.delete(f"{url}/v2/acme-pol/app/manifests/{d3}").status_code == 202
    # A group that is gone gives nothing: "op" can no longer push; nor does a
    # new group of the same name inherit its members.
    assert a("DELETE", "/tenants/acme/groups/ops").status_code == 204
    r = requests.post(f"{url}/v2/acme-pol/app/blobs/uploads/")
    assert r.status_code == 403
    assert a("GET", "/tenants/acme/users/op").json()["groups"] == []
    assert a("POST", "/tenants/acme/groups", {"name": "ops", "policies": ["SWR FullAccess"]}).status_code == 201
    assert a("GET", "/tenants/acme/groups/ops").json()["members"] == []
    assert requests.post(f"{url}/v2/acme-pol/app/blobs/uploads/").status_code == 403


def test_the_cli_does_what_the_api_does(world, tmp_path):
    """`berth iam` on the data directory while the server runs: the same
    rules (berth_domain::iam::admin), seen through the API."""
    reg, _, _, _ = world
    a = Api(reg, basic=("acme", "acme-pw"))

    def cli(*args, ok=True):
        r = subprocess.run([str(BERTH), "iam", "--data-dir", str(reg.data_dir), *reg.store_args, *args],
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode == 0) == ok, r.stderr
        return r.stdout if ok else r.stderr

    assert "acme\t" in cli("tenant-list")
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"Statement": [{"Effect": "Allow", "Action": ["swr:repository:pull"]}]}))
    cli("policy-create", "acme", "cli-pull", str(policy))
    cli("group-create", "acme", "cli-team", "--policy", "cli-pull")
    cli("group-set", "acme", "cli-team", "--policy", "cli-pull", "--policy", "SWR ReadOnlyAccess")
    assert "cli-team\tcli-pull,SWR ReadOnlyAccess" in cli("group-list", "acme")
    assert "no system or custom policy" in cli("group-set", "acme", "cli-team", "--policy", "nope", ok=False)
    cli("user-create", "acme", "cli-user", "--password", "cli-pw", "--group", "cli-team")
    assert a("GET", "/tenants/acme/groups/cli-team").json()["members"] == ["cli-user"]
    assert "cli-pull" in cli("policy-list", "acme")
    cli("policy-delete", "acme", "cli-pull")
    assert a("GET", "/tenants/acme/groups/cli-team").json()["policies"] == ["SWR ReadOnlyAccess"]
    cli("group-delete", "acme", "cli-team")
    assert a("GET", "/tenants/acme/users/cli-user").json()["groups"] == []
    assert "cannot be deleted" in cli("user-delete", "acme", "acme", ok=False)
    cli("user-delete", "acme", "cli-user")
    assert a("GET", "/tenants/acme/users/cli-user").status_code == 404


def test_updates_renames_and_single_keys(world):
    """Policy replacement takes effect; renames are refused; one key is
    shown, and another user's key is not found under this user."""
    reg, _, _, _ = world
    a = Api(reg, basic=("acme", "acme-pw"))
    allow = {"Statement": [{"Effect": "Allow", "Action": ["swr:repository:pull", "swr:repository:push",
                                                          "swr:namespace:create"]}]}
    assert a("POST", "/tenants/acme/policies", {"name": "pusher", "document": allow}).status_code == 201
    assert a("POST", "/tenants/acme/users", {"name": "pu", "password": "pu-pw", "policies": ["pusher"]}).status_code == 201
    url = f"http://pu%40acme:pu-pw@{reg.host}"
    assert requests.post(f"{url}/v2/acme-upd/app/blobs/uploads/").status_code == 202
    # Replacing the document narrows what the policy allows.
    read_only = {"Statement": [{"Effect": "Allow", "Action": ["swr:repository:pull"]}]}
    r = a("PUT", "/tenants/acme/policies/pusher", {"description": "now read-only", "document": read_only})
    assert r.status_code == 200 and r.json()["description"] == "now read-only"
    assert requests.post(f"{url}/v2/acme-upd/app/blobs/uploads/").status_code == 403
    assert a("PUT", "/tenants/acme/policies/pusher", {"name": "other", "document": read_only}).status_code == 400
    assert a("PUT", "/tenants/acme/policies/nosuch", {"document": read_only}).status_code == 404
    assert a("POST", "/tenants/acme/groups", {"name": "g1"}).status_code == 201
    assert a("PATCH", "/tenants/acme/groups/g1", {"name": "g2"}).status_code == 400
    assert a("PATCH", "/tenants/acme/groups/nosuch", {"policies": []}).status_code == 404
    # Keys, one at a time.
    pu = Api(reg, basic=("pu@acme", "pu-pw"))
    mine = pu("POST", "/tenants/acme/users/pu/keys", {"description": "one"}).json()["access"]
    shown = pu("GET", f"/tenants/acme/users/pu/keys/{mine}")
    assert shown.status_code == 200 and shown.json()["description"] == "one" and "secret" not in shown.json()
    theirs = a("POST", "/tenants/acme/users/acme/keys").json()["access"]
    assert pu("GET", f"/tenants/acme/users/pu/keys/{theirs}").status_code == 404
    assert a("GET", f"/tenants/acme/users/pu/keys/{theirs}").status_code == 404
    assert a("DELETE", f"/tenants/acme/users/acme/keys/{theirs}").status_code == 204
    # A plain user sees no tenant record, and methods outside the API are refused.
    assert pu("GET", "/tenants/acme").status_code == 403
    assert pu("PUT", "/tenants/acme/users/pu").status_code == 405
