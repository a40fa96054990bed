"""Image triggers (issue 10, SWR shared edition): create/list/show/update/
delete through the official SDK, and the webhook trigger updating a
Kubernetes workload when a push matches.

No Kubernetes API server can run here, so `FakeKube` is an HTTPS server
(its own CA, a bearer token) that checks each request the way the
Kubernetes API reference describes it: `GET` of the workload, then a
`PATCH` with `Content-Type: application/strategic-merge-patch+json`,
`fieldManager` in the query, and a body that only sets `name` and `image`
of pod template containers that exist (merged by `name`). It applies the
patch to the object it serves, so a later GET sees it."""

import base64
import json
import ssl
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateTriggerRequest,
    CreateTriggerRequestBody,
    DeleteRepoRequest,
    DeleteTriggerRequest,
    ListTriggersDetailsRequest,
    ShowTriggerRequest,
    UpdateTriggerRequest,
    UpdateTriggerRequestBody,
)

from conftest import Registry, image, skopeo_push, tenant_client

TOKEN = "kube-token-s3cret"
REGISTRY_HOST = "registry.test"


def make_ca(d):
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM paths)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)
    run("openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=fake-kube-ca", "-keyout", "ca.key",
        "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "srv.key", "-out", "srv.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "srv.pem", "-extfile", "ext.cnf")
    return d / "ca.pem", d / "srv.pem", d / "srv.key"


def workload(kind, ns, name, containers):
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
            "spec": {"template": {"spec": {"containers": [{"name": n, "image": i} for n, i in containers]}}}}


class FakeKube:
    """Serves apps/v1 Deployments and StatefulSets over HTTPS; records
    every request and every problem it finds with one."""

    def __init__(self, tmp):
        ca, cert, key = make_ca(tmp)
        self.ca_pem = ca.read_text()
        self.objects, self.requests, self.problems, self.lock = {}, [], [], threading.Lock()
        # Paths whose next PATCH finds the object changed since it was read.
        self.changed = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def status(self, code, reason, message):
                self.answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "message": message, "reason": reason, "code": code})

            def handle_any(self, method):
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.requests.append((method, url.path, url.query, {k.lower(): v for k, v in self.headers.items()}, body))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.status(401, "Unauthorized", "Unauthorized")
                with outer.lock:
                    obj = outer.objects.get(url.path)
                if obj is None:
                    return self.status(404, "NotFound", f"{url.path} not found")
                if method == "GET":
                    return self.answer(200, obj)
                problem = outer.check_patch(self.headers, url.query, body, obj)
                if problem:
                    with outer.lock:
                        outer.problems.append(problem)
                    return self.status(400, "BadRequest", problem)
                with outer.lock:
                    if url.path in outer.changed:
                        # Someone else's change landed between GET and PATCH.
                        outer.changed.discard(url.path)
                        meta = obj["metadata"]
                        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
                    if json.loads(body)["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                        return self.status(409, "Conflict", "the object has been modified; please apply "
                                                            "your changes to the latest version and try again")
                    by_name = {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}
                    for c in json.loads(body)["spec"]["template"]["spec"]["containers"]:
                        by_name[c["name"]]["image"] = c["image"]
                    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
                self.answer(200, obj)

            def do_GET(self):
                self.handle_any("GET")

            def do_PATCH(self):
                self.handle_any("PATCH")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def check_patch(headers, query, body, obj):
        """What is wrong with a PATCH, as the API server would see it."""
        if headers.get("Content-Type") != "application/strategic-merge-patch+json":
            return f"patch type {headers.get('Content-Type')!r}"
        if urllib.parse.parse_qs(query).get("fieldManager") != ["berth"]:
            return f"query {query!r} names no fieldManager"
        try:
            patch = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if set(patch) != {"spec", "metadata"} or set(patch["spec"]) != {"template"} \
                or set(patch["spec"]["template"]) != {"spec"} or set(patch["spec"]["template"]["spec"]) != {"containers"}:
            return f"patch touches more than the pod template's containers: {patch}"
        if set(patch["metadata"]) != {"resourceVersion"}:
            return f"metadata in the patch is only the resourceVersion read (a precondition): {patch['metadata']}"
        names = {c["name"] for c in obj["spec"]["template"]["spec"]["containers"]}
        for c in patch["spec"]["template"]["spec"]["containers"]:
            if set(c) != {"name", "image"} or c["name"] not in names:
                return f"container patch {c} (merge key name; only image set)"
        return None

    def put(self, kind, ns, name, containers):
        path = f"/apis/apps/v1/namespaces/{ns}/{kind.lower()}s/{name}"
        with self.lock:
            self.objects[path] = workload(kind, ns, name, containers)
        return path

    def images(self, path):
        with self.lock:
            return {c["name"]: c["image"] for c in self.objects[path]["spec"]["template"]["spec"]["containers"]}

    def patches(self, path):
        with self.lock:
            return [r for r in self.requests if r[0] == "PATCH" and r[1] == path]

    def wait_patches(self, path, n, timeout=30):
        deadline = time.time() + timeout
        while len(self.patches(path)) < n:
            assert time.time() < deadline, f"{path}: {len(self.patches(path))} of {n} patches"
            time.sleep(0.1)
        return self.patches(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    kube = FakeKube(tmp_path_factory.mktemp("kube"))
    reg = Registry(tmp_path_factory.mktemp("triggers") / "data",
                   extra_args=["--outbound-allow", "127.0.0.1", "--var", "webhook_retry_base_ms=300",
                               "--var", "webhook_schedule=* * * * * *", "--var", "webhook_max_attempts=2",
                               "--var", f"registry_host={REGISTRY_HOST}"]).start()
    client, _ = tenant_client(reg, "acme", "acme-pw", ["apps"])
    admin = f"http://acme:acme-pw@{reg.host}/berth/v1/tenants/acme/clusters"
    r = requests.post(admin, json={"id": "prod", "name": "prod-cluster", "server": kube.url, "token": TOKEN,
                                   "organizations": ["apps"], "namespaces": ["shop"],
                                   "certificate_authority_data": base64.b64encode(kube.ca_pem.encode()).decode()})
    assert r.status_code == 201, r.text
    assert TOKEN not in r.text
    acme_url = f"http://acme:acme-pw@{reg.host}"
    for repo in ("apps/web", "apps/db", "apps/api"):
        image(acme_url, repo, tag="v0", layers=[repo.encode()])
    yield reg, client, kube, acme_url
    reg.stop()
    kube.server.shutdown()


def trigger(name, trigger_type="all", condition=".*", app_type="deployments", application="web",
            container=None, enable="true", cluster_id="prod", mode=None, cluster_name=None, cluster_ns="shop"):
    return CreateTriggerRequestBody(action="update", app_type=app_type, application=application,
                                    cluster_id=cluster_id, cluster_name=cluster_name, cluster_ns=cluster_ns,
                                    condition=condition, container=container, enable=enable, name=name,
                                    trigger_mode=mode, trigger_type=trigger_type)


def create(client, repo, body, ns="apps"):
    return client.create_trigger(CreateTriggerRequest(namespace=ns, repository=repo, body=body))


def test_each_kind_of_trigger_fires_exactly_when_its_condition_matches(env, tmp_path):
    reg, client, kube, acme = env
    web = kube.put("Deployment", "shop", "web", [("app", f"{REGISTRY_HOST}/apps/web:v0"),
                                                ("proxy", "docker.io/library/nginx:1.27")])
    db = kube.put("StatefulSet", "shop", "db", [("db", f"{REGISTRY_HOST}/apps/db:v0"), ("exporter", "x/exporter:1")])
    api = kube.put("Deployment", "shop", "api", [("main", "anything/else:1"), ("side", "other/side:2")])
    create(client, "web", trigger("on-every-tag"))
    create(client, "db", trigger("on-releases", "tag", "v1;v2", app_type="statefulsets", application="db"))
    create(client, "api", trigger("on-semver", "regular", r"v\d+\.\d+\.\d+", application="api", container="side"))

    # web: any tag, pushed by skopeo; only the container running apps/web changes.
    p = skopeo_push(reg.host, "acme:acme-pw", "apps/web:v7", tmp_path)
    assert p.returncode == 0, p.stderr
    digest = requests.head(f"{acme}/v2/apps/web/manifests/v7",
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).headers["Docker-Content-Digest"]
    kube.wait_patches(web, 1)
    assert kube.images(web) == {"app": f"{REGISTRY_HOST}/apps/web:v7@{digest}", "proxy": "docker.io/library/nginx:1.27"}
    method, path, query, headers, body = kube.patches(web)[0]
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["content-type"] == "application/strategic-merge-patch+json" and query == "fieldManager=berth"
    assert json.loads(body) == {"metadata": {"resourceVersion": "1"}, "spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": f"{REGISTRY_HOST}/apps/web:v7@{digest}"}]}}}}

    # db: only tags v1 and v2.
    image(acme, "apps/db", tag="v3", layers=[b"db v3"])
    image(acme, "apps/db", tag="v2", layers=[b"db v2"])
    kube.wait_patches(db, 1)
    assert kube.images(db)["db"].startswith(f"{REGISTRY_HOST}/apps/db:v2@sha256:")
    assert kube.images(db)["exporter"] == "x/exporter:1"

    # api: only tags matching the whole expression; the named container.
    image(acme, "apps/api", tag="v1.2", layers=[b"api 1.2"])
    image(acme, "apps/api", tag="xv1.2.3", layers=[b"api x"])
    _, d = image(acme, "apps/api", tag="v1.2.3", layers=[b"api 1.2.3"])
    kube.wait_patches(api, 1)
    assert kube.images(api) == {"main": "anything/else:1", "side": f"{REGISTRY_HOST}/apps/api:v1.2.3@{d}"}

    time.sleep(2.5)  # a few more runs of the job: nothing else fires
    assert len(kube.patches(web)) == 1 and len(kube.patches(db)) == 1 and len(kube.patches(api)) == 1
    assert kube.problems == []

    # The history, through the SDK.
    shown = client.show_trigger(ShowTriggerRequest(namespace="apps", repository="db", trigger="on-releases"))
    assert shown.trigger_type == "tag" and shown.condition == "v1;v2" and shown.enable == "true"
    assert shown.cluster_id == "prod" and shown.cluster_name == "prod-cluster" and shown.app_type == "statefulsets"
    assert [(h.tag, h.result) for h in shown.trigger_history] == [("v2", "success")]
    assert "statefulsets shop/db: db set to" in shown.trigger_history[0].detail
    listed = client.list_triggers_details(ListTriggersDetailsRequest(namespace="apps", repository="web"))
    assert [t.name for t in listed.body] == ["on-every-tag"]
    assert listed.body[0].trigger_history[0].tag == "v7" and listed.body[0].creator_name == "acme"


def test_disabled_triggers_do_not_fire_and_failures_are_in_the_history(env):
    reg, client, kube, acme = env
    path = kube.put("Deployment", "shop", "toggled", [("app", f"{REGISTRY_HOST}/apps/web:v0")])
    create(client, "web", trigger("toggle", "tag", "t1;t2", application="toggled", enable="false"))
    image(acme, "apps/web", tag="t1", layers=[b"t1"])
    time.sleep(2.5)
    assert kube.patches(path) == []
    client.update_trigger(UpdateTriggerRequest(namespace="apps", repository="web", trigger="toggle",
                                               body=UpdateTriggerRequestBody(enable="true")))
    assert client.show_trigger(ShowTriggerRequest(namespace="apps", repository="web", trigger="toggle")).enable == "true"
    image(acme, "apps/web", tag="t2", layers=[b"t2"])
    kube.wait_patches(path, 1)
    assert kube.images(path)["app"].startswith(f"{REGISTRY_HOST}/apps/web:t2@")
    # A workload that is not there: failed at once (no retries), with the API's answer.
    create(client, "web", trigger("missing", "tag", "t3", application="nowhere"))
    image(acme, "apps/web", tag="t3", layers=[b"t3"])
    deadline = time.time() + 20
    while not (h := client.show_trigger(ShowTriggerRequest(
            namespace="apps", repository="web", trigger="missing")).trigger_history) or "dead letter" not in h[0].detail:
        assert time.time() < deadline, h
        time.sleep(0.3)
    assert h[0].result == "failed" and h[0].tag == "t3" and "404" in h[0].detail
    missing = json.loads(client.show_trigger(ShowTriggerRequest(
        namespace="apps", repository="web", trigger="missing")).raw_content)["id"]
    log = requests.get(f"{acme}/berth/v1/webhooks/{missing}/deliveries").json()["deliveries"]
    assert [len(d["attempts"]) for d in log] == [1], "a permanent failure is not retried"
    # A workload changed between GET and PATCH: 409, read again, patched.
    kube.changed.add(path)
    image(acme, "apps/web", tag="t1", layers=[b"t1 again"])
    patches = kube.wait_patches(path, 3)
    assert [json.loads(p[4])["metadata"]["resourceVersion"] for p in patches[1:]] == ["2", "3"]
    assert kube.images(path)["app"].startswith(f"{REGISTRY_HOST}/apps/web:t1@")
    for name in ("toggle", "missing"):
        client.delete_trigger(DeleteTriggerRequest(namespace="apps", repository="web", trigger=name))
    assert [t.name for t in client.list_triggers_details(ListTriggersDetailsRequest(
        namespace="apps", repository="web")).body] == ["on-every-tag"]


def test_the_cluster_ca_and_token_are_used_and_kept_secret(env, tmp_path):
    reg, client, kube, acme = env
    admin = f"http://acme:acme-pw@{reg.host}/berth/v1/tenants/acme/clusters"
    listed = requests.get(admin).json()["clusters"]
    assert [c["id"] for c in listed] == ["prod"] and listed[0]["certificate_authority"] is True
    assert TOKEN not in requests.get(admin).text and TOKEN not in requests.get(f"{admin}/prod").text
    # A cluster registered without its CA: the host does not trust it.
    r = requests.post(admin, json={"id": "noca", "name": "noca", "server": kube.url, "token": TOKEN,
                                   "organizations": ["*"], "namespaces": ["*"]})
    assert r.status_code == 201, r.text
    path = kube.put("Deployment", "shop", "untrusted", [("app", f"{REGISTRY_HOST}/apps/db:v0")])
    create(client, "db", trigger("untrusted", application="untrusted", cluster_id="noca"))
    before = len(kube.requests)
    image(acme, "apps/db", tag="untrusted", layers=[b"untrusted"])
    deadline = time.time() + 20
    while not (h := client.show_trigger(ShowTriggerRequest(
            namespace="apps", repository="db", trigger="untrusted")).trigger_history) or "dead letter" not in h[0].detail:
        assert time.time() < deadline, h
        time.sleep(0.3)
    assert not [r for r in kube.requests[before:] if r[1] == path], "no request got through TLS"
    client.delete_trigger(DeleteTriggerRequest(namespace="apps", repository="db", trigger="untrusted"))
    # A trigger whose cluster was deleted stops, saying why (no request is sent).
    create(client, "db", trigger("orphaned", application="untrusted", cluster_id="noca"))
    assert requests.delete(f"{admin}/noca").status_code == 204
    before = len(kube.requests)
    image(acme, "apps/db", tag="orphaned", layers=[b"orphaned"])
    deadline = time.time() + 20
    while not (h := client.show_trigger(ShowTriggerRequest(
            namespace="apps", repository="db", trigger="orphaned")).trigger_history):
        assert time.time() < deadline
        time.sleep(0.3)
    assert h[0].result == "failed" and "no longer registered" in h[0].detail, h[0]
    assert len(kube.requests) == before
    client.delete_trigger(DeleteTriggerRequest(namespace="apps", repository="db", trigger="orphaned"))
    assert requests.get(f"{admin}/noca").status_code == 404
    assert TOKEN not in reg.log.read_text(), "the token is never logged"


def test_invalid_triggers_get_swr_errors_and_write_nothing(env):
    reg, client, kube, acme = env
    admin = f"http://acme:acme-pw@{reg.host}/berth/v1/tenants/acme/clusters"
    r = requests.post(admin, json={"id": "others", "name": "others", "server": kube.url, "token": TOKEN,
                                   "organizations": ["other"], "namespaces": ["*"]})
    assert r.status_code == 201, r.text
    before = [t.name for t in client.list_triggers_details(ListTriggersDetailsRequest(namespace="apps", repository="api")).body or []]
    bad = [
        (trigger("re", "regular", "v("), "regular expression"),
        (trigger("tg", "tag", " ; "), "tag"),
        (trigger("cl", cluster_id="nope"), "unknown cluster nope"),
        (trigger("cn", cluster_id=None, cluster_name="nope"), "unknown cluster nope"),
        (trigger("cc", mode="cci"), "cci cluster"),
        (trigger("ap", app_type="daemonsets"), "app_type"),
        (trigger("en", enable="yes"), "enable"),
        (trigger("9x"), "name"),
        (trigger("ns", application="Not_A_Name"), "application"),
        (trigger("kn", cluster_ns="kube-system"), "unknown cluster prod"),  # a namespace the cluster does not serve
        (trigger("or", cluster_id="others"), "unknown cluster others"),     # a cluster for other organizations
    ]
    for body, words in bad:
        with pytest.raises(ClientRequestException) as e:
            create(client, "api", body)
        assert e.value.status_code == 400, (body.name, e.value)
        assert e.value.error_code == "SVCSTG.SWR.4000001" and words in e.value.error_msg, e.value.error_msg
    create(client, "api", trigger("dup", application="api"))
    with pytest.raises(ClientRequestException) as e:
        create(client, "api", trigger("dup", application="api"))
    assert e.value.status_code == 409
    for missing in (lambda: client.show_trigger(ShowTriggerRequest(namespace="apps", repository="api", trigger="none")),
                    lambda: create(client, "nothere", trigger("x")),
                    lambda: client.list_triggers_details(ListTriggersDetailsRequest(namespace="other", repository="x"))):
        with pytest.raises(ClientRequestException) as e:
            missing()
        assert e.value.status_code == 404
    with pytest.raises(ClientRequestException) as e:
        client.update_trigger(UpdateTriggerRequest(namespace="apps", repository="api", trigger="dup",
                                                   body=UpdateTriggerRequestBody(enable="maybe")))
    assert e.value.status_code == 400
    # At most 20 triggers on a repository.
    room = 20 - len(before) - 1
    for i in range(room):
        create(client, "api", trigger(f"many{i}", application="api"))
    with pytest.raises(ClientRequestException) as e:
        create(client, "api", trigger("one-too-many", application="api"))
    assert e.value.status_code in (400, 403) and "at most 20" in e.value.error_msg, e.value
    for i in range(room):
        client.delete_trigger(DeleteTriggerRequest(namespace="apps", repository="api", trigger=f"many{i}"))
    client.delete_trigger(DeleteTriggerRequest(namespace="apps", repository="api", trigger="dup"))
    after = [t.name for t in client.list_triggers_details(ListTriggersDetailsRequest(namespace="apps", repository="api")).body or []]
    assert after == before
    # Cluster registrations are checked too, and refused to all but the tenant's administrators.
    scope = {"organizations": ["apps"], "namespaces": ["shop"]}
    for b, status in (({"name": "x", "server": "ftp://x", "token": "t"}, 400),
                      ({"name": "x", "server": kube.url.replace("https", "http"), "token": "t"}, 400),
                      ({"name": "x", "server": kube.url, "token": "a\nb"}, 400),
                      ({"name": "x", "server": kube.url, "token": "t", "certificate_authority_data": "aGVsbG8="}, 400),
                      ({"name": "x", "server": kube.url, "token": "t", "organizations": []}, 400),
                      ({"name": "prod-cluster", "server": kube.url, "token": "t"}, 409),
                      ({"id": "prod", "name": "y", "server": kube.url, "token": "t"}, 409)):
        r = requests.post(admin, json={**scope, **b})
        assert r.status_code == status and "errorCode" in r.json(), (b, r.text)
    assert requests.post(admin.replace("acme:acme-pw", "x:y"), json={}).status_code == 401
    reg.iam("user-create", "acme", "dev", "--password", "dev-pw", "--policy", "SWR FullAccess")
    r = requests.get(admin.replace("acme:acme-pw", "dev%40acme:dev-pw"))
    assert r.status_code == 403 and "administrators" in r.json()["errorMsg"], r.text
    reg.iam("tenant-create", "rival", "--password", "rival-pw")
    assert requests.get(admin.replace("acme:acme-pw", "rival:rival-pw")).status_code == 404
    assert requests.get(admin.replace("acme:acme-pw", "rival:rival-pw") + "/prod").status_code == 404
    assert requests.delete(admin.replace("acme:acme-pw", "rival:rival-pw") + "/prod").status_code == 404
    assert requests.delete(f"{admin}/others").status_code == 204


def test_a_repository_delete_removes_its_triggers(env):
    reg, client, kube, acme = env
    image(acme, "apps/short", tag="v0", layers=[b"short"])
    create(client, "short", trigger("gone-with-it"))
    client.delete_repo(DeleteRepoRequest(namespace="apps", repository="short"))
    image(acme, "apps/short", tag="v0", layers=[b"short again"])
    assert not client.list_triggers_details(ListTriggersDetailsRequest(namespace="apps", repository="short")).body


def test_cci_triggers_use_the_tenants_cci_cluster_and_logs_stay_with_their_tenant(env):
    reg, client, kube, acme = env
    admin = f"http://acme:acme-pw@{reg.host}/berth/v1/tenants/acme/clusters"
    with pytest.raises(ClientRequestException) as e:
        create(client, "db", trigger("early", mode="cci", cluster_id=None, application="jobs"))
    assert e.value.status_code == 400 and "cci cluster" in e.value.error_msg
    r = requests.post(admin, json={"id": "cci", "name": "cci", "kind": "cci", "server": kube.url, "token": TOKEN,
                                   "organizations": ["apps"], "namespaces": ["shop"],
                                   "certificate_authority_data": kube.ca_pem})
    assert r.status_code == 201, r.text
    r = requests.post(admin, json={"id": "cci2", "name": "cci2", "kind": "cci", "server": kube.url, "token": TOKEN,
                                   "organizations": ["apps"], "namespaces": ["shop"]})
    assert r.status_code == 409, "one cci cluster per tenant"
    path = kube.put("Deployment", "shop", "jobs", [("app", f"{REGISTRY_HOST}/apps/db:v0")])
    create(client, "db", trigger("serverless", mode="cci", cluster_id=None, application="jobs"))
    image(acme, "apps/db", tag="cci1", layers=[b"cci1"])
    kube.wait_patches(path, 1)
    shown = client.show_trigger(ShowTriggerRequest(namespace="apps", repository="db", trigger="serverless"))
    assert shown.trigger_mode == "cci" and shown.cluster_id == "" and shown.cluster_name == ""
    deadline = time.time() + 10
    while not (h := client.show_trigger(ShowTriggerRequest(
            namespace="apps", repository="db", trigger="serverless")).trigger_history):
        assert time.time() < deadline
        time.sleep(0.2)
    assert h[0].result == "success" and h[0].cluster_id == "" and h[0].tag == "cci1"
    # Its delivery log is the tenant's: another tenant, or a user without trigger rights, sees nothing.
    tid = json.loads(shown.raw_content)["id"]
    log = f"{reg.host}/berth/v1/webhooks/{tid}/deliveries"
    assert requests.get(f"http://acme:acme-pw@{log}").status_code == 200
    reg.iam("tenant-create", "outsider", "--password", "outsider-pw")
    assert requests.get(f"http://outsider:outsider-pw@{log}").status_code == 404
    reg.iam("user-create", "acme", "viewer", "--password", "viewer-pw", "--policy", "SWR ReadOnlyAccess")
    assert requests.get(f"http://viewer%40acme:viewer-pw@{log}").status_code == 403
    event = requests.get(f"http://acme:acme-pw@{log}").json()["deliveries"][0]["event_id"]
    assert requests.post(f"http://outsider:outsider-pw@{log}/{event}/redeliver").status_code == 404
    client.delete_trigger(DeleteTriggerRequest(namespace="apps", repository="db", trigger="serverless"))
