"""Image aging rules (issue 11, SWR shared edition): create/list/show/
update/delete and histories through the official SDK, and the aging job
removing exactly the tags each rule removes, then real pulls (skopeo)
showing what is left.

Date rules need tags days old: the test stops the registry and moves the
push times recorded in its SQLite metadata back (the `updated` time of
each tag's `mtag/` record), which is what the aging job reads."""

import json
import subprocess
import time

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateImmutableRuleBody,
    CreateImmutableRuleRequest,
    CreateRetentionRequest,
    CreateRetentionRequestBody,
    DeleteRetentionRequest,
    ListRetentionHistoriesRequest,
    ListRetentionsRequest,
    Rule,
    RuleSelector,
    ShowRetentionRequest,
    TagSelector,
    UpdateRetentionRequest,
    UpdateRetentionRequestBody,
)

from conftest import ADMIN, Registry, image, tenant_client

DAY = 86400


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("aging") / "data").start()
    client, project = tenant_client(reg, "acme", "acme-pw", ["age"])
    yield reg, client, project, f"http://acme:acme-pw@{reg.host}"
    reg.stop()


def backdate(reg, repo, days_by_tag):
    """Moves the recorded push time of each tag `days` back (registry stopped)."""
    reg.stop()
    db = reg.db()
    now = int(time.time())
    for key, value in db.execute("SELECT key, value FROM kv WHERE key LIKE ?", (f"mtag/{repo}:%",)).fetchall():
        tag = key.rsplit(":", 1)[1]
        if tag in days_by_tag:
            info = json.loads(value or b"{}")
            info["updated"] = now - days_by_tag[tag] * DAY
            db.execute("UPDATE kv SET value = ? WHERE key = ?", (json.dumps(info).encode(), key))
    db.commit()
    db.close()
    reg.start()


def tick(reg):
    r = requests.post(f"http://{reg.host}/berth/jobs/aging/tick", auth=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def tags(url, repo):
    """Every tag of the repository, following the list's pages."""
    out, last = [], None
    while True:
        r = requests.get(f"{url}/v2/{repo}/tags/list", params={"n": 1000, **({"last": last} if last else {})})
        if r.status_code != 200:
            return sorted(out)
        page = r.json()["tags"] or []
        out += page
        if "next" not in r.headers.get("Link", "") or not page:
            return sorted(out)
        last = page[-1]


def skopeo_tags(reg, repo):
    p = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "--creds", "acme:acme-pw",
                        f"docker://{reg.host}/{repo}"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return sorted(json.loads(p.stdout)["Tags"])


def body(template, params, selectors=(), cls=CreateRetentionRequestBody):
    return cls(algorithm="or", rules=[Rule(template=template, params=params, tag_selectors=[
        TagSelector(kind=k, pattern=p) for k, p in selectors])])


def test_date_rule_removes_old_tags_but_not_exempt_or_immutable_ones(env):
    reg, client, project, url = env
    for t in ("old1", "old2", "keep-label", "rel-1", "locked", "fresh"):
        image(url, "age/dated", tag=t, layers=[t.encode()])
    rid = client.create_retention(CreateRetentionRequest(namespace="age", repository="dated", body=body(
        "date_rule", {"days": "30"}, [("label", "keep-label"), ("regexp", "rel-.*")]))).id
    client.create_immutable_rule(CreateImmutableRuleRequest(instance_id=project, namespace_name="age",
                                                            body=CreateImmutableRuleBody(
        tag_selectors=[RuleSelector(kind="doublestar", decoration="matches", pattern="locked")],
        scope_selectors={"repository": [RuleSelector(kind="doublestar", decoration="repoMatches", pattern="dated")]})))
    backdate(reg, "age/dated", {"old1": 31, "old2": 400, "keep-label": 90, "rel-1": 90, "locked": 90, "fresh": 29})
    result = tick(reg)
    assert result["tags_removed"] == 2 and result["failed"] == [], result
    assert skopeo_tags(reg, "age/dated") == ["fresh", "keep-label", "locked", "rel-1"]
    # The manifests stay (untagged), pullable by digest.
    hist = client.list_retention_histories(ListRetentionHistoriesRequest(
        namespace="age", repository="dated", limit="10", offset="0"))
    assert sorted(h.tag for h in hist.retention_log) == ["old1", "old2"] and hist.total == 2
    assert all(h.retention_id == rid and h.rule_type == "date_rule" and h.repo == "age/dated" for h in hist.retention_log)
    assert hist.content_range == "0-1/2"
    digest = json.loads(hist.raw_content)["retention_log"][0]["digest"]
    assert requests.get(f"{url}/v2/age/dated/manifests/{digest}",
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 200
    # Each removal is an event.
    events = requests.get(f"{reg.url}/berth/v1/events").json()["events"]
    aged = sorted(e["tag"] for e in events if e["type"] == "tag.aged_out" and e["repository"] == "age/dated")
    assert aged == ["old1", "old2"]
    # A second run finds nothing more to do.
    assert tick(reg)["tags_removed"] == 0


def test_tag_rule_keeps_the_newest(env):
    reg, client, project, url = env
    for i in range(6):
        image(url, "age/counted", tag=f"b{i}", layers=[f"b{i}".encode()])
    image(url, "age/counted", tag="stable", layers=[b"stable"])
    backdate(reg, "age/counted", {f"b{i}": 10 - i for i in range(6)} | {"stable": 100})
    client.create_retention(CreateRetentionRequest(namespace="age", repository="counted", body=body(
        "tag_rule", {"num": "3"}, [("label", "stable")])))
    tick(reg)
    assert tags(url, "age/counted") == ["b3", "b4", "b5", "stable"]
    # The rule and its history go with the repository.
    from huaweicloudsdkswr.v2 import DeleteRepoRequest
    assert client.list_retention_histories(ListRetentionHistoriesRequest(
        namespace="age", repository="counted")).total == 3
    client.delete_repo(DeleteRepoRequest(namespace="age", repository="counted"))
    image(url, "age/counted", tag="again", layers=[b"again"])
    assert client.list_retention_histories(ListRetentionHistoriesRequest(
        namespace="age", repository="counted")).total == 0
    assert not client.list_retentions(ListRetentionsRequest(namespace="age", repository="counted")).body


def test_rules_through_the_sdk_and_their_errors(env):
    reg, client, project, url = env
    image(url, "age/crud", tag="v1")
    rid = client.create_retention(CreateRetentionRequest(namespace="age", repository="crud", body=body(
        "tag_rule", {"num": "5"}))).id
    listed = client.list_retentions(ListRetentionsRequest(namespace="age", repository="crud")).body
    assert [r.id for r in listed] == [rid] and listed[0].algorithm == "or"
    shown = client.show_retention(ShowRetentionRequest(namespace="age", repository="crud", retention_id=rid))
    assert shown.rules[0].template == "tag_rule" and shown.rules[0].params == {"num": "5"}
    client.update_retention(UpdateRetentionRequest(namespace="age", repository="crud", retention_id=rid,
                                                   body=body("date_rule", {"days": "7"}, cls=UpdateRetentionRequestBody)))
    shown = client.show_retention(ShowRetentionRequest(namespace="age", repository="crud", retention_id=rid))
    assert shown.rules[0].template == "date_rule"
    with pytest.raises(ClientRequestException) as e:
        client.create_retention(CreateRetentionRequest(namespace="age", repository="crud", body=body(
            "tag_rule", {"num": "5"})))
    assert e.value.status_code == 409, "one aging rule per repository"
    bad = [
        body("date_rule", {"days": "-1"}),
        body("tag_rule", {"num": "many"}),
        body("size_rule", {"num": "1"}),
        body("tag_rule", {"num": "1"}, [("regexp", "v(")]),
        body("tag_rule", {"num": "1"}, [("glob", "*")]),
        CreateRetentionRequestBody(algorithm="and", rules=[Rule(template="tag_rule", params={"num": "1"}, tag_selectors=[])]),
    ]
    image(url, "age/crud2", tag="v1")
    for b in bad:
        with pytest.raises(ClientRequestException) as e:
            client.create_retention(CreateRetentionRequest(namespace="age", repository="crud2", body=b))
        assert e.value.status_code == 400 and e.value.error_code == "SVCSTG.SWR.4000001", e.value
    assert not client.list_retentions(ListRetentionsRequest(namespace="age", repository="crud2")).body
    made = client.create_retention(CreateRetentionRequest(namespace="age", repository="crud2", body=body(
        "tag_rule", {"num": "1"}, [("label", "x")])))
    client.delete_retention(DeleteRetentionRequest(namespace="age", repository="crud2", retention_id=made.id))
    r = requests.get(f"{url}/v2/manage/namespaces/age/repos/crud2/retentions/histories?limit=0")
    assert r.status_code == 401, "the management API needs a signature"
    for bad_query in ({"limit": "0", "offset": "0"}, {"limit": "100000", "offset": "0"}):
        with pytest.raises(ClientRequestException) as e:
            client.list_retention_histories(ListRetentionHistoriesRequest(namespace="age", repository="crud2", **bad_query))
        assert e.value.status_code == 400
    empty = client.list_retention_histories(ListRetentionHistoriesRequest(namespace="age", repository="crud2"))
    assert empty.total == 0 and empty.content_range == "*/0"
    with pytest.raises(ClientRequestException) as e:
        client.show_retention(ShowRetentionRequest(namespace="age", repository="crud", retention_id=999999))
    assert e.value.status_code == 404
    with pytest.raises(ClientRequestException) as e:
        client.create_retention(CreateRetentionRequest(namespace="age", repository="nothere", body=body(
            "tag_rule", {"num": "5"})))
    assert e.value.status_code == 404
    client.delete_retention(DeleteRetentionRequest(namespace="age", repository="crud", retention_id=rid))
    assert not client.list_retentions(ListRetentionsRequest(namespace="age", repository="crud")).body


def test_kill_9_during_an_aging_run_then_restart_finishes_each_tag_once(tmp_path):
    from conftest import all_events, tag_many
    reg = Registry(tmp_path / "data").start()
    try:
        client, _ = tenant_client(reg, "acme", "acme-pw", ["age"])
        url = f"http://acme:acme-pw@{reg.host}"
        n = 1200
        digest = tag_many(url, "age/many", n)
        client.create_retention(CreateRetentionRequest(namespace="age", repository="many", body=body(
            "tag_rule", {"num": "2"})))

        reg.kill_during_tick("aging", after=0.3)
        reg = Registry(tmp_path / "data", port=reg.port).start()

        def history():
            h = client.list_retention_histories(ListRetentionHistoriesRequest(
                namespace="age", repository="many", limit="1000", offset="0"))
            more = client.list_retention_histories(ListRetentionHistoriesRequest(
                namespace="age", repository="many", limit="1000", offset="1000"))
            return [x.tag for x in (h.retention_log or []) + (more.retention_log or [])]

        left, removed = tags(url, "age/many"), history()
        # Each tag is either still there or removed with its history entry:
        # never both, never neither.
        assert 0 < len(removed) < n - 2, len(removed)
        assert sorted(left + removed) == [f"t{i:04d}" for i in range(n)]
        # The lease of the killed run was released at start: the next run
        # goes at once and finishes, each tag removed once.
        result = tick(reg)
        assert result["tags_removed"] == n - 2 - len(removed), result
        assert tags(url, "age/many") == [f"t{n - 2:04d}", f"t{n - 1:04d}"]
        removed = history()
        assert len(removed) == len(set(removed)) == n - 2
        aged = [e["tag"] for e in all_events(reg, "tag.aged_out")]
        assert sorted(aged) == sorted(removed)
        # The manifest every tag named is intact.
        r = requests.get(f"{url}/v2/age/many/manifests/{digest}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200
    finally:
        reg.stop()
