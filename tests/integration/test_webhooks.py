"""Webhook policies (issue 10): SWR's enterprise API through the official
SDK, and the webhook trigger delivering real pushes to a real HTTP
receiver started here — each payload format, the HMAC signature, retries
with Retry-After, order per repository, 410 Gone, dead letters, the SSRF
guard, and invalid input."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateInstanceWebhookRequest,
    CreateNamespaceRequest,
    CreateNamespaceRequestBody,
    CreateWebhookPolicyRequestBody,
    DeleteInstanceWebhookRequest,
    ListInstanceRequest,
    ListInstanceWebhookJobsRequest,
    ListInstanceWebhooksRequest,
    RuleSelector,
    ScopeRule,
    ShowInstanceRequest,
    ShowInstanceWebhookRequest,
    SwrClient,
    Target,
    UpdateInstanceWebhookRequest,
    UpdateWebhookPolicyRequestBody,
)

from conftest import ADMIN, Registry, image, signed_call, tenant_client


class Receiver:
    """An HTTP server on 127.0.0.1 that records what it gets. `answers`
    maps a path to a list of (status, headers) to give in turn (the last
    one repeats); unknown paths get 200."""

    def __init__(self):
        self.got, self.answers, self.lock = [], {}, threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    queue = outer.answers.get(self.path, [(200, {})])
                    status, headers = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def at(self, path):
        with self.lock:
            return [g for g in self.got if g[0] == path]

    def wait(self, path, n, timeout=30):
        deadline = time.time() + timeout
        while len(self.at(path)) < n:
            assert time.time() < deadline, f"{path}: {len(self.at(path))} of {n} deliveries arrived"
            time.sleep(0.1)
        return self.at(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    receiver = Receiver()
    reg = Registry(tmp_path_factory.mktemp("webhooks") / "data",
                   extra_args=["--outbound-allow", "127.0.0.1", "--var", "webhook_retry_base_ms=300",
                               "--var", "webhook_schedule=* * * * * *",
                               "--var", "webhook_max_attempts=3", "--var", "registry_host=registry.test"]).start()
    acme = reg.iam("tenant-create", "acme", "--password", "acme-pw")
    key = reg.iam("key-create", "acme", "acme")
    creds = BasicCredentials(key["ak"], key["sk"], acme["project_id"])
    client = SwrClient.new_builder().with_credentials(creds).with_endpoints([reg.anon_url]).build()
    client.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="hooks")))
    yield reg, client, acme["project_id"], key, receiver
    reg.stop()
    receiver.server.shutdown()


def body(address, repo="**", tag="**", name="hook", auth_header=None, event_types=("PUSH_ARTIFACT",), enabled=True,
         cls=CreateWebhookPolicyRequestBody):
    return cls(
        name=name,
        targets=[Target(type="http", address=address, auth_header=auth_header, skip_cert_verify=False,
                        address_type="internal")],
        scope_rules=[ScopeRule(
            tag_selectors=[RuleSelector(kind="doublestar", decoration="matches", pattern=tag)],
            scope_selectors={"repository": [RuleSelector(kind="doublestar", decoration="repoMatches", pattern=repo)]},
            repo_scope_mode="regular")],
        event_types=list(event_types), enabled=enabled)


def create(client, instance, b, ns="hooks"):
    return client.create_instance_webhook(
        CreateInstanceWebhookRequest(instance_id=instance, namespace_name=ns, body=b)).id


def test_instances_are_tenants(env):
    reg, client, instance, _, _ = env
    listed = client.list_instance(ListInstanceRequest())
    assert listed.total == 1 and listed.instances[0].id == instance and listed.instances[0].status == "Running"
    assert client.show_instance(ShowInstanceRequest(instance_id=instance)).name == "acme"
    with pytest.raises(ClientRequestException) as e:
        client.show_instance(ShowInstanceRequest(instance_id="other"))
    assert e.value.status_code == 404


def test_a_push_is_delivered_with_auth_header_as_harbor_json(env):
    reg, client, instance, _, rx = env
    pid = create(client, instance, body(f"{rx.url}/harbor", repo="app*", tag="v*", auth_header="Authorization:Bearer s3cret"))
    shown = client.show_instance_webhook(ShowInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=pid))
    assert shown.name == "hook" and shown.namespace_name == "hooks" and shown.enabled
    assert shown.targets[0].address == f"{rx.url}/harbor"
    assert "s3cret" not in str(shown), "the auth header's value is never shown"
    acme = f"http://acme:acme-pw@{reg.host}"
    _, digest = image(acme, "hooks/app1", tag="v1")
    image(acme, "hooks/app1", tag="latest", layers=[b"not v*"])   # tag not selected
    image(acme, "hooks/db", tag="v1", layers=[b"not app*"])        # repository not selected
    got = rx.wait("/harbor", 1)
    time.sleep(1.5)
    assert len(rx.at("/harbor")) == 1
    _, headers, raw = got[0]
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["content-type"] == "application/json"
    payload = json.loads(raw)
    assert payload["type"] == "PUSH_ARTIFACT" and payload["operator"] == "acme@acme"
    res = payload["event_data"]["resources"][0]
    assert res["digest"] == digest and res["tag"] == "v1" and res["resource_url"] == "registry.test/hooks/app1:v1"
    assert payload["event_data"]["repository"]["repo_full_name"] == "hooks/app1"
    jobs = client.list_instance_webhook_jobs(ListInstanceWebhookJobsRequest(
        instance_id=instance, namespace_name="hooks", policy_id=pid))
    assert jobs.total == 1 and jobs.jobs[0].status == "Succeed" and jobs.jobs[0].event_type == "PUSH_ARTIFACT"
    assert json.loads(jobs.jobs[0].job_detail)["attempts"][0]["status"] == 200
    client.delete_instance_webhook(DeleteInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=pid))


def raw_body(address, fmt, secret=None, repo="**"):
    """A create body as JSON, with Berth's target fields the SDK lacks."""
    target = {"type": "http", "address": address, "address_type": "internal", "payload_format": fmt}
    if secret:
        target["secret"] = secret
    selector = lambda d, p: {"kind": "doublestar", "decoration": d, "pattern": p}
    return {"name": f"hook-{fmt}", "targets": [target], "event_types": ["PUSH_ARTIFACT"], "enabled": True,
            "scope_rules": [{"tag_selectors": [selector("matches", "**")],
                             "scope_selectors": {"repository": [selector("repoMatches", repo)]},
                             "repo_scope_mode": "regular"}]}


def test_payload_formats_and_the_signature(env):
    reg, client, instance, key, rx = env
    path = f"/v2/{instance}/instances/{instance}/namespaces/hooks/webhook/policies"
    ids = []
    for fmt in ("cloudevents", "cloudevents-binary", "distribution"):
        r = signed_call(reg, key, instance, "POST", path, raw_body(f"{rx.url}/{fmt}", fmt, secret=f"key-{fmt}", repo="fmt"))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    acme = f"http://acme:acme-pw@{reg.host}"
    _, digest = image(acme, "hooks/fmt", tag="1.0")
    for fmt in ("cloudevents", "cloudevents-binary", "distribution"):
        _, headers, raw = rx.wait(f"/{fmt}", 1)[0]
        expected = "sha256=" + hmac.new(f"key-{fmt}".encode(), raw, hashlib.sha256).hexdigest()
        assert headers["x-berth-signature-256"] == expected, fmt
        if fmt == "cloudevents":
            assert headers["content-type"] == "application/cloudevents+json"
            ce = json.loads(raw)
            assert ce["specversion"] == "1.0" and ce["type"] == "io.berth.manifest.pushed"
            assert ce["id"] == headers["x-berth-event-id"] and ce["data"]["resources"][0]["digest"] == digest
        elif fmt == "cloudevents-binary":
            assert headers["ce-specversion"] == "1.0" and headers["ce-type"] == "io.berth.manifest.pushed"
            assert headers["ce-subject"] == "hooks/fmt"
            assert json.loads(raw)["resources"][0]["tag"] == "1.0"
        else:
            assert headers["content-type"] == "application/vnd.docker.distribution.events.v1+json"
            ev = json.loads(raw)["events"][0]
            assert ev["action"] == "push" and ev["target"]["digest"] == digest and ev["target"]["repository"] == "hooks/fmt"
    # The secret is never shown back.
    r = signed_call(reg, key, instance, "GET", f"{path}/{ids[0]}", None)
    assert r.status_code == 200 and "key-cloudevents" not in r.text and r.json()["targets"][0]["secret_set"] is True
    for pid in ids:
        client.delete_instance_webhook(DeleteInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=pid))


def test_a_receiver_that_was_down_gets_every_event_in_order(env):
    reg, client, instance, _, rx = env
    rx.answers["/flaky"] = [(503, {"Retry-After": "1"}), (500, {}), (200, {})]
    pid = create(client, instance, body(f"{rx.url}/flaky", repo="order"))
    acme = f"http://acme:acme-pw@{reg.host}"
    tags = [f"t{i}" for i in range(4)]
    for i, t in enumerate(tags):
        image(acme, "hooks/order", tag=t, layers=[f"order {i}".encode()])
    got = rx.wait("/flaky", 6, timeout=40)
    delivered = [json.loads(b)["event_data"]["resources"][0]["tag"] for _, _, b in got]
    # The first event failed twice (503, honouring Retry-After, then 500),
    # and nothing behind it went first.
    assert delivered[:3] == ["t0", "t0", "t0"] and delivered[3:] == tags[1:]
    assert rx.at("/flaky")[1][0] == "/flaky"
    jobs = client.list_instance_webhook_jobs(ListInstanceWebhookJobsRequest(
        instance_id=instance, namespace_name="hooks", policy_id=pid, limit=10))
    assert jobs.total == 4 and all(j.status == "Succeed" for j in jobs.jobs)
    first = [j for j in jobs.jobs if len(json.loads(j.job_detail)["attempts"]) == 3]
    assert len(first) == 1
    statuses = [a["status"] for a in json.loads(first[0].job_detail)["attempts"]]
    assert statuses == [503, 500, 200]
    client.delete_instance_webhook(DeleteInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=pid))


def test_gone_disables_and_failures_are_dead_lettered(env):
    reg, client, instance, _, rx = env
    rx.answers["/gone"] = [(410, {})]
    rx.answers["/down"] = [(500, {})]
    gone = create(client, instance, body(f"{rx.url}/gone", repo="dead"))
    down = create(client, instance, body(f"{rx.url}/down", repo="dead", name="down"))
    acme = f"http://acme:acme-pw@{reg.host}"
    image(acme, "hooks/dead", tag="a", layers=[b"dead a"])
    rx.wait("/down", 3, timeout=30)
    image(acme, "hooks/dead", tag="b", layers=[b"dead b"])
    time.sleep(3)
    assert len(rx.at("/gone")) == 1, "a target that answered 410 is not called again"
    jobs = lambda pid: client.list_instance_webhook_jobs(ListInstanceWebhookJobsRequest(
        instance_id=instance, namespace_name="hooks", policy_id=pid)).jobs
    by_status = sorted(j.status for j in jobs(gone))
    assert by_status == ["Failed", "Stopped"]
    failed = [j for j in jobs(down) if j.status == "Failed"]
    assert failed and "dead letter" in failed[-1].status_text
    assert len(json.loads(failed[-1].job_detail)["attempts"]) == 3
    # The delivery log and a redelivery, through Berth's admin API.
    acme_admin = f"http://acme:acme-pw@{reg.host}/berth/v1/webhooks/{down}/deliveries"
    log = requests.get(acme_admin).json()["deliveries"]
    assert [d["status"] for d in log].count("Failed") == len(failed)
    assert all(a["status"] == 500 for a in log[0]["attempts"])
    rx.answers["/down"] = [(200, {})]
    before = len(rx.at("/down"))
    event = failed[-1].id
    assert requests.post(f"http://{reg.host}/berth/v1/webhooks/{down}/deliveries/{event}/redeliver").status_code == 401
    r = requests.post(f"{acme_admin}/{event}/redeliver")
    assert r.status_code == 202 and r.json()["status"] == "Pending", r.text
    rx.wait("/down", before + 1)
    deadline = time.time() + 10
    while (d := [x for x in requests.get(acme_admin).json()["deliveries"] if x["event_id"] == str(event)][0])["status"] != "Succeed":
        assert time.time() < deadline, d
        time.sleep(0.2)
    assert [a["status"] for a in d["attempts"]] == [500, 500, 500, 200]
    assert requests.post(f"{acme_admin}/999999/redeliver").status_code == 404
    r = requests.get(acme_admin, params={"status": "Bogus"})
    assert r.status_code == 400 and r.json()["errorCode"] == "SVCSTG.SWR.4000001"
    assert requests.get(f"http://{reg.host}/berth/v1/webhooks/{down}/deliveries", auth=ADMIN).status_code == 404
    # Enabling the policy again gives the target another chance.
    client.update_instance_webhook(UpdateInstanceWebhookRequest(
        instance_id=instance, namespace_name="hooks", policy_id=gone,
        body=body(f"{rx.url}/gone", repo="dead", enabled=False, cls=UpdateWebhookPolicyRequestBody)))
    client.update_instance_webhook(UpdateInstanceWebhookRequest(
        instance_id=instance, namespace_name="hooks", policy_id=gone,
        body=body(f"{rx.url}/gone", repo="dead", enabled=True, cls=UpdateWebhookPolicyRequestBody)))
    shown = client.show_instance_webhook(ShowInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=gone))
    assert shown.enabled
    for pid in (gone, down):
        client.delete_instance_webhook(DeleteInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=pid))


def test_policies_are_listed_filtered_and_checked(env):
    reg, client, instance, key, rx = env
    a = create(client, instance, body(f"{rx.url}/x", name="alpha"))
    b = create(client, instance, body(f"{rx.url}/y", name="beta"))
    listed = client.list_instance_webhooks(ListInstanceWebhooksRequest(instance_id=instance, order_column="name", order_type="asc"))
    names = [p.name for p in listed.policies]
    assert listed.total >= 2 and names == sorted(names)
    only = client.list_instance_webhooks(ListInstanceWebhooksRequest(instance_id=instance, name="alp"))
    assert [p.id for p in only.policies] == [a]
    bad = [
        body("ftp://127.0.0.1/x"),                             # not HTTP(S)
        body(f"{rx.url}/x", tag="{unclosed"),                  # bad pattern
        body(f"{rx.url}/x", event_types=("PULL_EVERYTHING",)), # unknown event type
        body(f"{rx.url}/x", name="no spaces allowed"),         # bad name
        body(f"{rx.url}/x", auth_header="Host:evil.example"),  # a header Berth sets
        body("http://127.0.0.1:99999/x"),                      # bad port
    ]
    for b_ in bad:
        with pytest.raises(ClientRequestException) as e:
            create(client, instance, b_)
        assert e.value.status_code == 400 and e.value.error_code == "SVCSTG.SWR.4000001"
    two = body(f"{rx.url}/x")
    two.targets = two.targets * 2                            # too many targets
    with pytest.raises(ClientRequestException) as e:
        create(client, instance, two)
    assert e.value.status_code == 400
    with pytest.raises(ClientRequestException) as e:
        create(client, instance, body(f"{rx.url}/x"), ns="nope")
    assert e.value.status_code == 404
    # The address cannot change on update (SWR), and nothing was half-written.
    with pytest.raises(ClientRequestException) as e:
        client.update_instance_webhook(UpdateInstanceWebhookRequest(
            instance_id=instance, namespace_name="hooks", policy_id=a,
            body=body(f"{rx.url}/elsewhere", name="alpha", cls=UpdateWebhookPolicyRequestBody)))
    assert e.value.status_code == 400
    assert client.show_instance_webhook(ShowInstanceWebhookRequest(
        instance_id=instance, namespace_name="hooks", policy_id=a)).targets[0].address == f"{rx.url}/x"
    for pid in (a, b):
        client.delete_instance_webhook(DeleteInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=pid))
    with pytest.raises(ClientRequestException) as e:
        client.show_instance_webhook(ShowInstanceWebhookRequest(instance_id=instance, namespace_name="hooks", policy_id=a))
    assert e.value.status_code == 404


def test_loopback_targets_are_refused_unless_allowed(tmp_path):
    rx = Receiver()
    reg = Registry(tmp_path / "data").start()
    try:
        client, project = tenant_client(reg, "acme", "acme-pw", ["ssrf"])
        inst = project
        port = rx.server.server_address[1]
        # The loopback receiver under every spelling a URL parser accepts.
        forms = ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]", "localhost"]
        pids = [create(client, inst, body(f"http://{h}:{port}/ssrf", name=f"s{i}"), ns="ssrf")
                for i, h in enumerate(forms)]
        image(f"http://acme:acme-pw@{reg.host}", "ssrf/app", tag="v1")
        for pid, form in zip(pids, forms):
            deadline = time.time() + 20
            while True:
                jobs = client.list_instance_webhook_jobs(ListInstanceWebhookJobsRequest(
                    instance_id=inst, namespace_name="ssrf", policy_id=pid)).jobs
                if jobs and jobs[0].status == "Failed":
                    break
                assert time.time() < deadline, f"the delivery to {form} was never tried"
                time.sleep(0.3)
            attempts = json.loads(jobs[0].job_detail)["attempts"]
            # Refused by the host's guard, and not retried: it would be refused again.
            assert len(attempts) == 1 and "permanent" in jobs[0].status_text, (form, jobs[0])
            assert attempts[0]["status"] is None and "--outbound-allow" in attempts[0]["error"], (form, attempts)
        assert rx.at("/ssrf") == []
    finally:
        reg.stop()
        rx.server.shutdown()


def test_a_push_acknowledged_before_a_kill_is_delivered_after_restart(tmp_path):
    rx = Receiver()
    reg = Registry(tmp_path / "data", extra_args=["--outbound-allow", "127.0.0.1", "--var", "webhook_schedule=* * * * * *"]).start()
    try:
        client, project = tenant_client(reg, "acme", "acme-pw", ["crash"])
        # The receiver is down (503) until the host is gone.
        rx.answers["/crash"] = [(503, {})]
        create(client, project, body(f"{rx.url}/crash"), ns="crash")
        _, digest = image(f"http://acme:acme-pw@{reg.host}", "crash/app", tag="v1")
        reg.kill()
        before = len(rx.at("/crash"))  # attempts answered 503 before the kill
        rx.answers["/crash"] = [(200, {})]
        reg.start()
        after = rx.wait("/crash", before + 1, timeout=40)[before:]
        assert [json.loads(b)["event_data"]["resources"][0]["digest"] for _, _, b in after] == [digest]
    finally:
        reg.stop()
        rx.server.shutdown()


def test_old_deliveries_and_read_events_are_pruned(tmp_path):
    rx = Receiver()
    reg = Registry(tmp_path / "data", extra_args=[
        "--outbound-allow", "127.0.0.1", "--var", "webhook_schedule=* * * * * *",
        "--var", "webhook_log_retention_days=0", "--var", "event_retention_days=0"]).start()
    try:
        client, project = tenant_client(reg, "acme", "acme-pw", ["old"])
        pid = create(client, project, body(f"{rx.url}/old"), ns="old")
        for t in ("a", "b"):
            image(f"http://acme:acme-pw@{reg.host}", "old/app", tag=t, layers=[t.encode()])
        rx.wait("/old", 2)
        log = f"http://acme:acme-pw@{reg.host}/berth/v1/webhooks/{pid}/deliveries"
        deadline = time.time() + 10
        while requests.get(log).json()["deliveries"]:
            assert time.time() < deadline, "finished deliveries past the retention are removed"
            time.sleep(0.2)
        events = lambda: requests.get(f"{reg.url}/berth/v1/events").json()["events"]
        assert len(events()) >= 2
        r = requests.post(f"http://{reg.host}/berth/jobs/gc/tick", auth=ADMIN)
        assert r.status_code == 200 and r.json()["result"]["events_removed"] >= 2, r.text
        assert events() == []
        # An event whose delivery is still being retried stays until it is delivered.
        rx.answers["/old"] = [(503, {})]
        _, digest = image(f"http://acme:acme-pw@{reg.host}", "old/app", tag="c", layers=[b"c"])
        rx.wait("/old", 3)
        r = requests.post(f"http://{reg.host}/berth/jobs/gc/tick", auth=ADMIN)
        assert r.status_code == 200 and r.json()["result"]["events_removed"] == 0, r.text
        assert [e["tag"] for e in events()] == ["c"]
        rx.answers["/old"] = [(200, {})]
        deadline = time.time() + 20
        # Delivered (then its delivery pruned), and only then the event.
        while requests.get(log).json()["deliveries"] or events():
            assert time.time() < deadline, "delivered, then pruned"
            requests.post(f"http://{reg.host}/berth/jobs/gc/tick", auth=ADMIN)
            time.sleep(0.3)
        last = json.loads(rx.at("/old")[-1][2])
        assert last["event_data"]["resources"][0]["digest"] == digest
    finally:
        reg.stop()
        rx.server.shutdown()
