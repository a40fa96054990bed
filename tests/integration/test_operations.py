"""Operations (issue 14): audit log queries (SWR enterprise ListAuditLogs
through the official SDK, Berth's admin query by curl-style requests),
tenants' endpoint policies (IP allow lists) on /v2/, docker login and the
APIs, and SWR's limit of concurrent layer uploads per tenant."""

import json
import subprocess
import threading
import time

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateEndpointPolicyRequestBody,
    CreateInstanceEndpointPolicyRequest,
    CreateNamespaceRequest,
    CreateNamespaceRequestBody,
    DeleteNamespacesRequest,
    IpInfo,
    ListAuditLogsRequest,
    ShowInstanceEndpointPolicyRequest,
    UpdateInstanceEndpointPolicyRequest,
    UpdateWhiteListRequestBody,
)

from conftest import ADMIN, Registry, image, sha256, signed_call, tenant_client


def swr_error(r, status):
    """Asserts `r` is SWR's error JSON with `status`; its message."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["errorCode"].startswith("SVCSTG.SWR.") and body["errorMsg"], body
    return body["errorMsg"]


def oci_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["errors"][0]["code"] == code, r.text
    return r.json()["errors"][0]["message"]


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    """A registry whose internal network is 127.0.0.1 and which believes
    X-Forwarded-For from 127.0.0.1, with an upload limit of 2."""
    reg = Registry(tmp_path_factory.mktemp("ops") / "data", extra_args=[
        "--var", "internal_networks=127.0.0.1/32",
        "--var", "trusted_proxies=127.0.0.1/32",
        "--var", "upload_concurrency_per_tenant=2",
    ]).start()
    yield reg
    reg.stop()


# --- audit log queries ------------------------------------------------------

def test_audit_logs_through_the_sdk(ops):
    reg = ops
    client, project = tenant_client(reg, "auditco", "auditco-pw", namespaces=["aud-a", "aud-b", "aud-c"])
    client.delete_namespaces(DeleteNamespacesRequest(namespace="aud-c"))
    image(f"http://auditco:auditco-pw@{reg.host}", "aud-a/app", tag="v1")

    everything = client.list_audit_logs(ListAuditLogsRequest(instance_id=project, limit=100))
    logs = everything.audit_logs
    assert everything.total == len(logs) >= 5
    # Newest first: the push, then the delete, then the creations.
    times = [log.op_time for log in logs]
    assert times == sorted(times, reverse=True)
    assert [log.id for log in logs] == sorted((log.id for log in logs), reverse=True)
    pushed = [log for log in logs if log.resource_type == "artifact"]
    assert pushed and pushed[0].operation == "create" and pushed[0].username == "auditco"
    assert pushed[0].resource == "aud-a/app:v1"

    deletes = client.list_audit_logs(ListAuditLogsRequest(instance_id=project, operation="delete", limit=10))
    assert deletes.total == 1
    assert (deletes.audit_logs[0].resource_type, deletes.audit_logs[0].resource) == \
        ("namespace", "/v2/manage/namespaces/aud-c")
    creates = client.list_audit_logs(ListAuditLogsRequest(instance_id=project, operation="create", limit=100))
    assert {log.operation for log in creates.audit_logs} == {"create"}
    assert creates.total == len(creates.audit_logs) < everything.total

    # Pages: offset a multiple of limit, no overlap, same total.
    first = client.list_audit_logs(ListAuditLogsRequest(instance_id=project, limit=2, offset=0))
    second = client.list_audit_logs(ListAuditLogsRequest(instance_id=project, limit=2, offset=2))
    assert first.total == second.total == everything.total
    assert [x.id for x in first.audit_logs + second.audit_logs] == [x.id for x in logs[:4]]


def test_audit_log_bad_input_and_access(ops):
    reg = ops
    client, project = tenant_client(reg, "auditbad", "auditbad-pw")
    reg.iam("user-create", "auditbad", "viewer", "--password", "viewer-pw", "--policy", "SWR ReadOnlyAccess")
    viewer = reg.iam("key-create", "auditbad", "viewer")
    owner = reg.iam("key-create", "auditbad", "auditbad")
    path = f"/v2/{project}/instances/{project}/audit-logs"
    for query, word in [("?limit=0", "limit"), ("?limit=101", "limit"), ("?limit=10&offset=5", "offset"),
                        ("?operation=frobnicate", "operation"), ("?limit=ten", "limit")]:
        assert word in swr_error(signed_call(reg, owner, project, "GET", path + query, None), 400)
    # Not an administrator of the tenant.
    swr_error(signed_call(reg, viewer, project, "GET", path, None), 403)
    # Another tenant's instance.
    _, other = tenant_client(reg, "auditother", "auditother-pw")
    swr_error(signed_call(reg, owner, project, "GET", f"/v2/{project}/instances/{other}/audit-logs", None), 404)
    # Records are never edited through the API.
    for method in ("PUT", "DELETE", "POST"):
        swr_error(signed_call(reg, owner, project, method, path, {}), 405)
    with pytest.raises(ClientRequestException) as e:
        client.list_audit_logs(ListAuditLogsRequest(instance_id=project, limit=1000))
    assert e.value.status_code == 400


def test_admin_audit_query(ops):
    reg = ops
    tenant_client(reg, "auditadm", "auditadm-pw", namespaces=["adm-a", "adm-b"])
    reg.iam("user-create", "auditadm", "pusher", "--password", "pusher-pw", "--policy", "SWR FullAccess")
    image(f"http://pusher%40auditadm:pusher-pw@{reg.host}", "adm-a/app", tag="v1")
    url = f"{reg.anon_url}/berth/v1/tenants/auditadm/audit"
    admin = ("auditadm", "auditadm-pw")

    r = requests.get(url, auth=admin)
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    assert r.json()["total"] == len(events) >= 3
    assert {"user", "operation", "kind", "resource_type", "resource", "status", "source", "time", "id"} <= events[0].keys()
    assert "password" not in r.text and "pusher-pw" not in r.text

    by_user = requests.get(url, params={"user": "pusher"}, auth=admin).json()
    assert by_user["events"] and {e["user"] for e in by_user["events"]} == {"pusher"}
    by_resource = requests.get(url, params={"resource": "adm-b"}, auth=admin).json()
    assert by_resource["total"] == 1 and by_resource["events"][0]["kind"] == "create"
    assert requests.get(url, params={"status": "failed"}, auth=admin).json()["total"] == 0
    future = requests.get(url, params={"since": "2100-01-01T00:00:00Z"}, auth=admin).json()
    assert future == {"events": [], "total": 0, "next": None}
    past = requests.get(url, params={"until": "2000-01-01"}, auth=admin).json()
    assert past["total"] == 0

    # Paged by `before`: every event once, newest first.
    seen, before = [], None
    while True:
        page = requests.get(url, params={"limit": 1, **({"before": before} if before else {})}, auth=admin).json()
        seen += [e["id"] for e in page["events"]]
        before = page["next"]
        if not before:
            break
    assert seen == [e["id"] for e in events]

    for params, word in [({"since": "yesterday"}, "since"), ({"status": "oops"}, "status"),
                         ({"since": "200", "until": "100"}, "since"), ({"before": "x"}, "before"),
                         ({"limit": "0"}, "limit")]:
        assert word in swr_error(requests.get(url, params=params, auth=admin), 400)
    # Another tenant's administrator sees nothing of it; no writes exist.
    tenant_client(reg, "auditpeer", "auditpeer-pw")
    swr_error(requests.get(url, auth=("auditpeer", "auditpeer-pw")), 404)
    swr_error(requests.get(url, auth=("pusher@auditadm", "pusher-pw")), 403)
    swr_error(requests.delete(url, auth=admin), 405)
    # The refused attempt is itself recorded; the system tenant's
    # administrators read any tenant's log.
    failed = requests.get(url, params={"status": "failed"}, auth=ADMIN).json()
    assert failed["total"] == 1
    assert (failed["events"][0]["operation"], failed["events"][0]["status"]) == \
        ("DELETE /berth/v1/tenants/auditadm/audit", 405)
    assert requests.get(url, auth=ADMIN).json()["total"] == len(events) + 1


def test_audit_records_past_the_retention_are_pruned(ops):
    reg = ops
    tenant_client(reg, "auditold", "auditold-pw", namespaces=["old-a"])
    db = reg.db()
    old_key = f"audit/auditold/{(int(time.time()) - 40 * 86400) * 10**9:020d}-0000000000000000"
    old = {"time": int(time.time()) - 40 * 86400, "tenant": "auditold", "user": "ghost",
           "operation": "DELETE /v2/manage/namespaces/ancient", "resource": "/v2/manage/namespaces/ancient",
           "status": 204, "source": "192.0.2.1:1"}
    kept_key = f"audit/auditold/{(int(time.time()) - 8 * 86400) * 10**9:020d}-0000000000000000"
    with db:
        for key, t in [(old_key, 40), (kept_key, 8)]:
            value = json.dumps(dict(old, time=int(time.time()) - t * 86400)).encode()
            db.execute("INSERT INTO kv (key, value, version) VALUES (?, ?, 1)", (key, value))
    url = f"{reg.anon_url}/berth/v1/tenants/auditold/audit"
    assert requests.get(url, params={"user": "ghost"}, auth=ADMIN).json()["total"] == 2
    r = requests.post(f"{reg.anon_url}/berth/jobs/gc/tick", auth=ADMIN)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["audit_retention_days"] == 30 and result["audit_records_removed"] >= 1
    ghosts = requests.get(url, params={"user": "ghost"}, auth=ADMIN).json()
    assert ghosts["total"] == 1 and ghosts["events"][0]["time"].startswith(
        time.strftime("%Y-%m-%d", time.gmtime(time.time() - 8 * 86400)))
    # Recent records stay.
    assert requests.get(url, params={"resource": "old-a"}, auth=ADMIN).json()["total"] == 1


def test_a_retention_below_seven_days_is_refused(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--var", "audit_retention_days=3"]).start()
    try:
        r = requests.post(f"{reg.anon_url}/berth/jobs/gc/tick", auth=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["audit_retention_days"] == 30
        assert "audit_retention_days must be" in reg.log.read_text()
    finally:
        reg.stop()


# --- endpoint policies ---------------------------------------------------------

def until(check, seconds=12):
    """Polls `check` (instances trust a policy for a few seconds)."""
    deadline = time.time() + seconds
    while True:
        last = check()
        if last is True or time.time() > deadline:
            return last
        time.sleep(0.5)


def test_endpoint_policy_allow_list(ops):
    reg = ops
    client, project = tenant_client(reg, "netco", "netco-pw", namespaces=["net-a"])
    tenant_client(reg, "netpeer", "netpeer-pw", namespaces=["peer-a"])
    image(f"http://netco:netco-pw@{reg.host}", "net-a/app", tag="v1")
    key = reg.iam("key-create", "netco", "netco")
    shown = client.show_instance_endpoint_policy(ShowInstanceEndpointPolicyRequest(instance_id=project))
    assert (shown.status, shown.ip_list) == ("Enable", [])

    outside = {"X-Forwarded-For": "203.0.113.9"}
    listed = {"X-Forwarded-For": "198.51.100.77"}
    manifest = f"{reg.anon_url}/v2/net-a/app/manifests/v1"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert requests.get(manifest, auth=("netco", "netco-pw"), headers={**accept, **outside}).status_code == 200

    client.update_instance_endpoint_policy(UpdateInstanceEndpointPolicyRequest(
        instance_id=project, body=UpdateWhiteListRequestBody(ip_list=[
            IpInfo(ip="198.51.100.0/24", description="office"), IpInfo(ip="2001:db8::7")])))
    shown = client.show_instance_endpoint_policy(ShowInstanceEndpointPolicyRequest(instance_id=project))
    assert shown.status == "Enable"
    assert [(i.ip, i.description) for i in shown.ip_list] == [("198.51.100.0/24", "office"), ("2001:db8::7", "")]

    # From outside, a password is not even checked: the answer is a wrong
    # password's, so the address learns neither whether it was right nor
    # that the tenant has a list (the log says why).
    def refused():
        r = requests.get(manifest, auth=("netco", "netco-pw"), headers={**accept, **outside})
        return r.status_code == 401 or r
    assert until(refused) is True
    r = requests.get(manifest, auth=("netco", "netco-pw"), headers={**accept, **outside})
    assert oci_error(r, 401, "UNAUTHORIZED") == "invalid username or password"
    wrong = requests.get(manifest, auth=("netco", "wrong"), headers={**accept, **listed})
    assert (wrong.status_code, wrong.json()) == (r.status_code, r.json())
    assert "a sign-in was refused: access from 203.0.113.9" in reg.log.read_text()
    # Listed addresses, and the internal network, still get in.
    assert requests.get(manifest, auth=("netco", "netco-pw"), headers={**accept, **listed}).status_code == 200
    assert requests.get(manifest, auth=("netco", "netco-pw"), headers=accept).status_code == 200
    # docker login (the token endpoint), a token used from outside, and the APIs.
    token = requests.get(f"{reg.anon_url}/service/token", params={"scope": "repository:net-a/app:pull"},
                         auth=("netco", "netco-pw"), headers=listed)
    assert token.status_code == 200, token.text
    r = requests.get(f"{reg.anon_url}/service/token", auth=("netco", "netco-pw"), headers=outside)
    oci_error(r, 401, "UNAUTHORIZED")
    bearer = {"Authorization": f"Bearer {token.json()['token']}", **accept}
    assert requests.get(manifest, headers={**bearer, **listed}).status_code == 200
    # A token (no password in it) used from outside is refused by name.
    assert "203.0.113.9" in oci_error(requests.get(manifest, headers={**bearer, **outside}), 403, "DENIED")
    r = requests.get(f"{reg.anon_url}/v2/", auth=("netco", "netco-pw"), headers=outside)
    oci_error(r, 401, "UNAUTHORIZED")
    r = requests.post(f"{reg.anon_url}/console/api/session", json={"username": "netco", "password": "netco-pw"},
                      headers=outside)
    assert swr_error(r, 401) == "wrong user name or password"
    # Proxies that add X-Forwarded-For lines instead of appending: every
    # line counts, so a forged first line does not win.
    import base64
    import http.client
    conn = http.client.HTTPConnection(reg.host, timeout=30)
    conn.putrequest("GET", "/v2/")
    conn.putheader("Authorization", "Basic " + base64.b64encode(b"netco:netco-pw").decode())
    conn.putheader("X-Forwarded-For", "198.51.100.77")
    conn.putheader("X-Forwarded-For", "203.0.113.9")
    conn.endheaders()
    assert conn.getresponse().status == 401
    conn.close()
    path = "/v2/manage/namespaces"
    swr_error(requests.get(f"{reg.anon_url}/berth/v1/whoami", auth=("netco", "netco-pw"), headers=outside), 401)
    signed = signed_call(reg, key, project, "GET", path, None)
    assert signed.status_code == 200
    # Other tenants are not bound by it.
    assert requests.get(f"{reg.anon_url}/v2/", auth=("netpeer", "netpeer-pw"), headers=outside).status_code == 200
    # A forwarded address counts only from a trusted proxy: from 127.0.0.2
    # the header is ignored and 127.0.0.2 (outside the list) is refused.
    curl = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.2",
                           "-u", "netco:netco-pw", "-H", "X-Forwarded-For: 198.51.100.77",
                           f"{reg.anon_url}/v2/"], capture_output=True, text=True, timeout=30)
    assert curl.stdout == "401", curl

    # Closed to the outside: only the internal network.
    client.create_instance_endpoint_policy(CreateInstanceEndpointPolicyRequest(
        instance_id=project, body=CreateEndpointPolicyRequestBody(enable=False)))
    assert client.show_instance_endpoint_policy(
        ShowInstanceEndpointPolicyRequest(instance_id=project)).status == "Disable"

    def listed_refused():
        r = requests.get(manifest, auth=("netco", "netco-pw"), headers={**accept, **listed})
        return r.status_code == 401 or r
    assert until(listed_refused) is True
    assert requests.get(manifest, auth=("netco", "netco-pw"), headers=accept).status_code == 200

    # The system administrator can open a tenant that shut itself out.
    r = requests.put(f"{reg.anon_url}/berth/v1/tenants/netco/endpoint-policy", auth=ADMIN,
                     json={"enabled": True, "ip_list": []})
    assert r.status_code == 200 and r.json() == {"status": "Enable", "ip_list": []}, r.text

    def open_again():
        r = requests.get(manifest, auth=("netco", "netco-pw"), headers={**accept, **outside})
        return r.status_code == 200 or r
    assert until(open_again) is True


def test_endpoint_policy_bad_input(ops):
    reg = ops
    _, project = tenant_client(reg, "netbad", "netbad-pw")
    owner = reg.iam("key-create", "netbad", "netbad")
    reg.iam("user-create", "netbad", "viewer", "--password", "viewer-pw", "--policy", "SWR ReadOnlyAccess")
    viewer = reg.iam("key-create", "netbad", "viewer")
    path = f"/v2/{project}/instances/{project}/endpoint-policy"
    for body, word in [({"ip_list": [{"ip": "example.com"}]}, "example.com"),
                       ({"ip_list": [{"ip": "10.0.0.0/40"}]}, "10.0.0.0/40"),
                       ({"ip_list": [{"ip": f"10.0.{i // 256}.{i % 256}"} for i in range(201)]}, "at most"),
                       ({"ip_list": [{"ip": "10.0.0.1", "description": "x" * 129}]}, "128"),
                       ({"ip_list": [{"ip": "10.0.0.1", "description": "office\u202e"}]}, "direction"),
                       ({"ip_list": "10.0.0.1"}, "invalid body"),
                       ({"ip_list": [], "extra": 1}, "invalid body")]:
        assert word in swr_error(signed_call(reg, owner, project, "PUT", path, body), 400)
    assert "invalid body" in swr_error(signed_call(reg, owner, project, "POST", path, {"enable": "yes"}), 400)
    swr_error(signed_call(reg, viewer, project, "PUT", path, {"ip_list": [{"ip": "10.0.0.1"}]}), 403)
    swr_error(signed_call(reg, viewer, project, "GET", path, None), 403)
    swr_error(signed_call(reg, owner, project, "DELETE", path, None), 405)
    # Nothing was stored by the refused calls.
    r = signed_call(reg, owner, project, "GET", path, None)
    assert r.json() == {"status": "Enable", "ip_list": []}
    # Canonical entries, duplicates dropped.
    r = signed_call(reg, owner, project, "PUT", path, {"ip_list": [{"ip": "10.9.8.7/8"}, {"ip": "10.0.0.0/8"}]})
    assert r.status_code == 200, r.text
    assert signed_call(reg, owner, project, "GET", path, None).json()["ip_list"] == [{"ip": "10.0.0.0/8", "description": ""}]


# --- the upload limit ------------------------------------------------------------

def test_concurrent_layer_uploads_per_tenant_are_limited(ops):
    reg = ops
    tenant_client(reg, "upco", "upco-pw", namespaces=["up-a"])
    tenant_client(reg, "uppeer", "uppeer-pw", namespaces=["peer-up"])
    auth = ("upco", "upco-pw")
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_body():
        yield b"x" * 1024
        started.release()
        release.wait(60)
        yield b"y" * 1024

    def start(repo, who=auth):
        r = requests.post(f"{reg.anon_url}/v2/{repo}/blobs/uploads/", auth=who)
        assert r.status_code == 202, r.text
        return r.headers["Location"]

    answers = []

    def slow_patch(loc):
        answers.append(requests.patch(f"{reg.anon_url}{loc}", data=slow_body(), auth=auth,
                                      headers={"Content-Type": "application/octet-stream"}))
    held = [threading.Thread(target=slow_patch, args=(start("up-a/app"),)) for _ in range(2)]
    for t in held:
        t.start()
    for _ in held:
        assert started.acquire(timeout=30)
    try:
        # Both slots are held: a third upload with bytes is refused...
        loc = start("up-a/app")
        r = requests.patch(f"{reg.anon_url}{loc}", data=b"z" * 10, auth=auth,
                           headers={"Content-Type": "application/octet-stream"})
        assert "at once" in oci_error(r, 429, "TOOMANYREQUESTS")
        assert int(r.headers["Retry-After"]) > 0
        data = b"monolithic"
        r = requests.post(f"{reg.anon_url}/v2/up-a/app/blobs/uploads/", params={"digest": sha256(data)},
                          data=data, auth=auth, headers={"Content-Type": "application/octet-stream"})
        oci_error(r, 429, "TOOMANYREQUESTS")
        # ... but not requests without bytes, nor another tenant's uploads.
        assert requests.get(f"{reg.anon_url}{loc}", auth=auth).status_code == 204
        image(f"http://uppeer:uppeer-pw@{reg.host}", "peer-up/app", tag="v1")
    finally:
        release.set()
        for t in held:
            t.join()
    assert [a.status_code for a in answers] == [202, 202]
    # The slots are back: the refused upload goes on from where it was.
    r = requests.patch(f"{reg.anon_url}{loc}", data=b"z" * 10, auth=auth,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    r = requests.put(f"{reg.anon_url}{r.headers['Location']}", params={"digest": sha256(b"z" * 10)}, auth=auth)
    assert r.status_code == 201, r.text


# --- metrics ---------------------------------------------------------------------

def scrape(reg, **kwargs):
    """`GET /metrics`, parsed as OpenMetrics (what its Content-Type says):
    {(name, labels): value}. The strict parser refuses anything malformed."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    r = requests.get(f"{reg.anon_url}/metrics", **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0)


def test_metrics_count_requests_bytes_jobs_and_stores(ops):
    reg = ops
    tenant_client(reg, "metco", "metco-pw", namespaces=["met-a"])
    before = scrape(reg)
    image(f"http://metco:metco-pw@{reg.host}", "met-a/app", layers=(b"m" * 5000,), tag="v1")
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    for _ in range(3):
        assert requests.get(f"{reg.anon_url}/v2/met-a/app/manifests/v1", auth=("metco", "metco-pw"),
                            headers=accept).status_code == 200
    assert requests.get(f"{reg.anon_url}/v2/met-a/app/manifests/nope", auth=("metco", "metco-pw"),
                        headers=accept).status_code == 404
    open_upload = requests.post(f"{reg.anon_url}/v2/met-a/app/blobs/uploads/", auth=("metco", "metco-pw"))
    assert open_upload.status_code == 202
    assert requests.post(f"{reg.anon_url}/berth/jobs/aging/tick", auth=ADMIN).status_code == 200
    after = scrape(reg)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert delta("berth_http_requests_total", family="manifests", method="GET", status=200) == 3
    assert delta("berth_http_requests_total", family="manifests", method="GET", status=404) == 1
    assert delta("berth_http_requests_total", family="manifests", method="PUT", status=201) == 1
    assert delta("berth_http_request_duration_seconds_count", family="manifests") == 5
    assert delta("berth_http_request_bytes_total", family="uploads") >= 5000
    assert delta("berth_http_response_bytes_total", family="manifests") > 0
    assert value(after, "berth_http_requests_in_flight", family="metrics") == 1
    assert value(after, "berth_http_requests_in_flight", family="uploads") == 0
    assert delta("berth_job_runs_total", job="aging", result="succeeded") == 1
    assert delta("berth_job_run_duration_seconds_count", job="aging") == 1
    assert value(after, "berth_uploads_open") >= 1
    assert value(after, "berth_metadata_store_bytes") > 0
    assert value(after, "berth_blobs_stored") > 0 and value(after, "berth_blob_store_bytes") > 0
    assert ("berth_events_pending", (("consumer", "webhooks"),)) in after
    # Nothing secret in the text.
    text = requests.get(f"{reg.anon_url}/metrics").text
    assert "metco-pw" not in text and ADMIN[1] not in text


def test_metrics_through_a_local_proxy_need_the_token(ops):
    """Behind a proxy on the same host every peer is loopback: a request a
    proxy forwarded is let in by the token only."""
    r = requests.get(f"{ops.anon_url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 403


def test_metrics_are_protected(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTH_METRICS_TOKEN", "metrics-s3cret")
    reg = Registry(tmp_path / "data", extra_args=["--metrics-allow", "192.0.2.0/24"]).start()
    try:
        r = requests.get(f"{reg.anon_url}/metrics")
        assert r.status_code == 403 and "berth_" not in r.text
        assert requests.get(f"{reg.anon_url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        samples = scrape(reg, headers={"Authorization": "Bearer metrics-s3cret"})
        assert value(samples, "berth_http_requests_total", family="metrics", method="GET", status=403) == 2
        assert requests.post(f"{reg.anon_url}/metrics", headers={"Authorization": "Bearer metrics-s3cret"}).status_code == 405
        assert "metrics-s3cret" not in reg.log.read_text()
        # Ticks nobody may run, or of jobs that do not exist, add no series.
        for job in ("nosuchjob", "gc"):
            assert requests.post(f"{reg.anon_url}/berth/jobs/{job}/tick").status_code in (401, 404)
        text = requests.get(f"{reg.anon_url}/metrics", headers={"Authorization": "Bearer metrics-s3cret"}).text
        assert "nosuchjob" not in text and 'job="gc"' not in text
    finally:
        reg.stop()
