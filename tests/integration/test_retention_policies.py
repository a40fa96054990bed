"""Retention policies (issue 11, SWR enterprise edition): create/list/
show/update/delete, executions, tasks and sub-tasks through the official
SDK; every template, tag and repository selector, immutable tags and
signatures; real pulls (skopeo) showing exactly the tags the plan keeps;
a dry run that changes nothing but its own report (the whole metadata
store and blob tree compared before and after); scheduled runs; invalid
policies answered with SWR error JSON; kill -9 during an execution.

Push and pull times days old: the test stops the registry and moves the
times recorded in its SQLite metadata back (a tag's `mtag/` record holds
its push time, the `pulled/` counter its manifest's last pull)."""

import hashlib
import json
import subprocess
import time

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateImmutableRuleBody,
    CreateImmutableRuleRequest,
    CreateInstanceRetentionPolicyRequest,
    CreateRetentionPolicyRequestBody,
    DeleteInstanceRetentionPolicyRequest,
    ExecuteInstanceRetentionPolicyRequest,
    ExecuteRetentionPolicyRequestBody,
    ListInstanceRetentionPoliciesRequest,
    ListInstanceRetentionPolicyExecSubTasksRequest,
    ListInstanceRetentionPolicyExecTasksRequest,
    ListInstanceRetentionPolicyExecutionsRequest,
    RetentionRule,
    RetentionSelector,
    RuleSelector,
    ShowInstanceRetentionPolicyRequest,
    TriggerConfig,
    TriggerSetting,
    UpdateInstanceRetentionPolicyRequest,
    UpdateRetentionPolicyRequestBody,
)

from conftest import ADMIN, Registry, all_events, image, tag_many, tenant_client

DAY = 86400
# Only what a test starts runs: no periodic job writes during a snapshot.
QUIET = [arg for job in ("gc", "aging", "webhook", "retention")
         for arg in ("--var", f"{job}_schedule=0 0 0 1 1 *")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("policies") / "data", extra_args=QUIET).start()
    client, project = tenant_client(reg, "corp", "corp-pw", ["keep", "other"])
    yield reg, client, project, f"http://corp:corp-pw@{reg.host}"
    reg.stop()


def selector(decoration, pattern):
    return RetentionSelector(kind="doublestar", decoration=decoration, pattern=pattern)


def rule(template, n, tags=("matches", "**"), repos=("repoMatches", "**")):
    return RetentionRule(priority=0, disabled=False, action="retain", template=template,
                         params={template: n}, tag_selectors=[selector(*tags)],
                         scope_selectors={"repository": [selector(*repos)]}, repo_scope_mode="regular")


def policy(name, rules, trigger="manual", cron=None, enabled=True, cls=CreateRetentionPolicyRequestBody):
    settings = TriggerSetting(cron=cron) if cron else None
    return cls(algorithm="or", enabled=enabled, rules=rules, name=name,
               trigger=TriggerConfig(type=trigger, trigger_settings=settings))


def backdate(reg, repo, pushed_days, pulled_days):
    """Moves push times of tags and last-pull times of their manifests back
    (registry stopped); a tag with no pulled entry stays never pulled."""
    reg.stop()
    db = reg.db()
    now = int(time.time())
    for key, value in db.execute("SELECT key, value FROM kv WHERE key LIKE ?", (f"mtag/{repo}:%",)).fetchall():
        digest, tag = key[len(f"mtag/{repo}:"):].rsplit(":", 1)
        if tag in pushed_days:
            info = json.loads(value or b"{}")
            info["updated"] = now - pushed_days[tag] * DAY
            db.execute("UPDATE kv SET value = ? WHERE key = ?", (json.dumps(info).encode(), key))
        if tag in pulled_days:
            db.execute("INSERT OR REPLACE INTO counters (key, value) VALUES (?, ?)",
                       (f"pulled/{repo}:{digest}", now - pulled_days[tag] * DAY))
    db.commit()
    db.close()
    reg.start()


def skopeo_tags(reg, repo):
    p = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "--creds", "corp:corp-pw",
                        f"docker://{reg.host}/{repo}"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return sorted(json.loads(p.stdout)["Tags"])


def execute(client, project, ns, pid, dry_run):
    return client.execute_instance_retention_policy(ExecuteInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name=ns, policy_id=pid,
        body=ExecuteRetentionPolicyRequestBody(dry_run=dry_run))).id


def wait(client, project, ns, pid, eid, timeout=60):
    """The execution once it finished."""
    deadline = time.time() + timeout
    while True:
        listed = client.list_instance_retention_policy_executions(ListInstanceRetentionPolicyExecutionsRequest(
            instance_id=project, namespace_name=ns, policy_id=pid, limit=100))
        found = [x for x in listed.executions if x.id == eid]
        assert found, (eid, listed)
        if found[0].status != "InProgress":
            return found[0]
        assert time.time() < deadline, found[0]
        time.sleep(0.2)


def subtasks(client, project, ns, pid, eid):
    """{repository: {tag: (action, status, status_text)}} of an execution."""
    tasks = client.list_instance_retention_policy_exec_tasks(ListInstanceRetentionPolicyExecTasksRequest(
        instance_id=project, namespace_name=ns, policy_id=pid, execution_id=eid, limit=100))
    out = {}
    for t in tasks.tasks:
        subs, offset = [], 0
        while True:
            page = client.list_instance_retention_policy_exec_sub_tasks(
                ListInstanceRetentionPolicyExecSubTasksRequest(
                    instance_id=project, namespace_name=ns, policy_id=pid, execution_id=eid,
                    task_id=t.id, limit=100, offset=offset))
            subs += page.sub_tasks
            offset += 100
            if offset >= page.total:
                break
        assert len(subs) == t.total and t.retained == sum(s.action == "RETAIN" for s in subs), t
        out[t.repository] = {s.tag: (s.action, s.status, s.status_text) for s in subs}
    assert tasks.total == len(out)
    return out


def snapshot(reg):
    """Every row of the metadata store, and every stored blob with the
    SHA-256 of its bytes."""
    db = reg.db()
    kv = {k: (v, ver) for k, v, ver in db.execute("SELECT key, value, version FROM kv")}
    counters = dict(db.execute("SELECT key, value FROM counters"))
    db.close()
    files = {d: hashlib.sha256(reg.storage.read(d)).hexdigest() for d in reg.storage.digests()}
    return kv, counters, files


def changed(before, after):
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k))


def test_policies_dry_run_then_real_run_keep_exactly_the_plan(env):
    reg, client, project, url = env
    digests = {}
    for t in ("v1", "v2", "v3", "v4", "v5", "dev-x", "locked"):
        _, digests[t] = image(url, "keep/app", tag=t, layers=[f"app {t}".encode()])
    # A cosign-style signature of v2: goes with v2.
    sig = f"sha256-{digests['v2'][7:]}.sig"
    image(url, "keep/app", tag=sig, layers=[b"signature of v2"])
    for t in ("a", "b"):
        image(url, "keep/tools", tag=t, layers=[f"tools {t}".encode()])
    backdate(reg, "keep/app",
             {"v1": 50, "v2": 40, "v3": 30, "v4": 20, "v5": 10, "dev-x": 60, "locked": 90, sig: 40},
             {"v1": 1, "v3": 9})
    backdate(reg, "keep/tools", {"a": 400, "b": 400}, {})
    client.create_immutable_rule(CreateImmutableRuleRequest(
        instance_id=project, namespace_name="keep", body=CreateImmutableRuleBody(
            tag_selectors=[RuleSelector(kind="doublestar", decoration="matches", pattern="locked")],
            scope_selectors={"repository": [RuleSelector(kind="doublestar", decoration="repoMatches",
                                                         pattern="app")]})))
    # The 2 newest v* tags, and whatever was pulled within 7 days; in app only.
    pid = client.create_instance_retention_policy(CreateInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="keep", body=policy("keep-recent", [
            rule("latestPushedK", 2, tags=("matches", "v*"), repos=("repoMatches", "app")),
            rule("nDaysSinceLastPull", 7, repos=("repoExcludes", "tools")),
        ]))).id
    shown = client.show_instance_retention_policy(ShowInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="keep", policy_id=pid))
    assert shown.name == "keep-recent" and shown.namespace_name == "keep" and len(shown.rules) == 2
    assert shown.rules[0].params == {"latestPushedK": 2} and shown.trigger.type == "manual"
    expected_kept = ["locked", "v1", "v4", "v5"]
    expected_removed = ["dev-x", sig, "v2", "v3"]

    # Dry run: the plan, and nothing changed but the execution's report.
    kv, counters, files = snapshot(reg)
    eid = execute(client, project, "keep", pid, dry_run=True)
    done = wait(client, project, "keep", pid, eid)
    assert done.status == "Succeed" and done.dry_run and done.trigger == "manual", done
    kv2, counters2, files2 = snapshot(reg)
    assert files2 == files, "a dry run wrote to the blob store"
    report = ("retention-exec/", "retention-exec-latest/", "retention-task/", "retention-subtask/",
              "job/retention/")
    # Besides the report: the execute call's audit record and its
    # signature's replay guard, one each. No tag, manifest, link or event.
    others = [k for k in changed(kv, kv2) if not k.startswith(report)]
    assert [k.split("/")[0] for k in others] == ["audit", "iam"], others
    assert others[0].startswith("audit/corp/") and others[1].startswith("iam/signed/"), others
    assert any(k.startswith("retention-subtask/") for k in changed(kv, kv2))
    assert changed(counters, counters2) == [
        "count/retention-execution-id", "count/retention-subtask-id", "count/retention-task-id"]
    plan = subtasks(client, project, "keep", pid, eid)
    assert list(plan) == ["keep/app"], "tools is outside every rule's scope"
    app = plan["keep/app"]
    assert sorted(t for t, (a, _, _) in app.items() if a == "DEL") == expected_removed
    assert sorted(t for t, (a, _, _) in app.items() if a == "RETAIN") == expected_kept
    assert app["v4"][2].startswith("retained by rule") and "push time" in app["v4"][2]
    assert "pulled 1 days ago" in app["v1"][2], app["v1"]
    assert app["locked"][2].startswith("immutable"), app["locked"]
    assert app["v3"][2].startswith("dry run, not removed: no rule retains it"), app["v3"]
    assert "pulled 9 days ago" in app["v3"][2]
    assert "never pulled" in app["dev-x"][2] and "tag not selected" in app["dev-x"][2]
    assert "signs" in app[sig][2]
    assert skopeo_tags(reg, "keep/app") == sorted(expected_kept + expected_removed)

    # The real run carries out exactly that plan.
    eid = execute(client, project, "keep", pid, dry_run=False)
    done = wait(client, project, "keep", pid, eid)
    assert done.status == "Succeed" and not done.dry_run, done
    real = subtasks(client, project, "keep", pid, eid)
    assert {t: a for t, (a, _, _) in real["keep/app"].items()} == {t: a for t, (a, _, _) in app.items()}
    assert all(s == "Succeed" for _, s, _ in real["keep/app"].values())
    assert skopeo_tags(reg, "keep/app") == expected_kept
    assert skopeo_tags(reg, "keep/tools") == ["a", "b"]
    events = requests.get(f"{reg.url}/berth/v1/events", params={"limit": 1000}).json()["events"]
    aged = [e for e in events if e["type"] == "tag.aged_out" and e["repository"] == "keep/app"]
    assert sorted(e["tag"] for e in aged) == expected_removed
    assert {e["operator"] for e in aged} == {f"retention policy {pid} execution {eid}"}
    # The untagged manifests stay, pullable by digest (GC's to judge).
    r = requests.get(f"{url}/v2/keep/app/manifests/{digests['v2']}",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200
    # Executions newest first; a second run finds nothing more to remove.
    time.sleep(1.1)  # not the same signed request within a second (a replay)
    eid3 = execute(client, project, "keep", pid, dry_run=False)
    wait(client, project, "keep", pid, eid3)
    again = subtasks(client, project, "keep", pid, eid3)["keep/app"]
    assert sorted(again) == expected_kept and all(a == "RETAIN" for a, _, _ in again.values())
    listed = client.list_instance_retention_policy_executions(ListInstanceRetentionPolicyExecutionsRequest(
        instance_id=project, namespace_name="keep", policy_id=pid, limit=2, offset=0))
    assert listed.total == 3 and [x.id for x in listed.executions] == [eid3, eid]


def test_latest_pulled_and_days_since_push(env):
    reg, client, project, url = env
    for t in ("p1", "p2", "p3", "p4"):
        image(url, "other/pulls", tag=t, layers=[f"pulls {t}".encode()])
    backdate(reg, "other/pulls", {"p1": 100, "p2": 100, "p3": 100, "p4": 3}, {"p1": 2, "p2": 50})
    pid = client.create_instance_retention_policy(CreateInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", body=policy("pulled", [
            rule("latestPulledN", 1, tags=("excludes", "p4")),
            rule("nDaysSinceLastPush", "5", repos=("repoMatches", "pul*")),
        ]))).id
    eid = execute(client, project, "other", pid, dry_run=False)
    assert wait(client, project, "other", pid, eid).status == "Succeed"
    # p1: the last pulled; p4: pushed 3 days ago; p2, p3 go.
    assert skopeo_tags(reg, "other/pulls") == ["p1", "p4"]


def test_policy_crud_and_errors(env):
    reg, client, project, url = env
    req = CreateInstanceRetentionPolicyRequest
    pid = client.create_instance_retention_policy(req(
        instance_id=project, namespace_name="other", body=policy("crud", [rule("latestPushedK", 3)]))).id
    listed = client.list_instance_retention_policies(ListInstanceRetentionPoliciesRequest(
        instance_id=project, name="crud"))
    assert listed.total == 1 and listed.retentions[0].id == pid and listed.retentions[0].namespace_name == "other"
    client.update_instance_retention_policy(UpdateInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", policy_id=pid,
        body=policy("crud2", [rule("nDaysSinceLastPull", 30)], enabled=False, cls=UpdateRetentionPolicyRequestBody)))
    shown = client.show_instance_retention_policy(ShowInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", policy_id=pid))
    assert shown.name == "crud2" and not shown.enabled and shown.rules[0].template == "nDaysSinceLastPull"
    # What show gives can be passed back: rule ids stay; numbers as strings
    # are stored as numbers.
    rules = json.loads(shown.raw_content)["rules"]
    rules[0]["params"] = {"nDaysSinceLastPull": "31"}
    time.sleep(1.1)
    r = client.update_instance_retention_policy(UpdateInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", policy_id=pid,
        body=policy("crud2", rules + [rule("latestPushedK", 1)], enabled=False, cls=UpdateRetentionPolicyRequestBody)))
    again = client.show_instance_retention_policy(ShowInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", policy_id=pid))
    assert again.rules[0].id == shown.rules[0].id and again.rules[0].params == {"nDaysSinceLastPull": 31}
    assert again.rules[1].id not in (None, shown.rules[0].id)
    # A disabled policy is previewed, not run.
    with pytest.raises(ClientRequestException) as e:
        execute(client, project, "other", pid, dry_run=False)
    assert e.value.status_code == 400 and "disabled" in e.value.error_msg
    eid = execute(client, project, "other", pid, dry_run=True)
    assert wait(client, project, "other", pid, eid).status == "Succeed"

    bad = {
        "unknown template": policy("b1", [rule("latestSize", 3)]),
        "negative count": policy("b2", [rule("latestPushedK", -1)]),
        "zero days": policy("b3", [rule("nDaysSinceLastPush", 0)]),
        "bad selector": policy("b4", [rule("latestPushedK", 1, tags=("matches", "[v"))]),
        "bad decoration": policy("b5", [rule("latestPushedK", 1, tags=("repoMatches", "v"))]),
        "bad cron": policy("b6", [rule("latestPushedK", 1)], trigger="scheduled", cron="0 * * * *"),
        "no cron": policy("b7", [rule("latestPushedK", 1)], trigger="scheduled"),
        "bad trigger": policy("b8", [rule("latestPushedK", 1)], trigger="event_based"),
        "bad name": policy("has space", [rule("latestPushedK", 1)]),
        "no rules": policy("b9", []),
    }
    for what, body in bad.items():
        with pytest.raises(ClientRequestException) as e:
            client.create_instance_retention_policy(req(instance_id=project, namespace_name="other", body=body))
        assert e.value.status_code == 400 and e.value.error_code == "SVCSTG.SWR.4000001", (what, e.value)
    with pytest.raises(ClientRequestException) as e:
        client.create_instance_retention_policy(req(
            instance_id=project, namespace_name="other", body=policy("crud2", [rule("latestPushedK", 1)])))
    assert e.value.status_code == 409, "names are unique in an organization"
    with pytest.raises(ClientRequestException) as e:
        client.create_instance_retention_policy(req(
            instance_id=project, namespace_name="nosuch", body=policy("x", [rule("latestPushedK", 1)])))
    assert e.value.status_code in (403, 404)
    with pytest.raises(ClientRequestException) as e:
        client.show_instance_retention_policy(ShowInstanceRetentionPolicyRequest(
            instance_id=project, namespace_name="keep", policy_id=pid))
    assert e.value.status_code == 404, "the policy is other's, not keep's"
    with pytest.raises(ClientRequestException) as e:
        client.list_instance_retention_policies(ListInstanceRetentionPoliciesRequest(
            instance_id=project, limit=10, offset=5))
    assert e.value.status_code == 400
    # Raw: the SWR error body.
    r = requests.post(f"{reg.url}/v2/{project}/instances/{project}/namespaces/other/retention/policies", json={})
    assert r.status_code == 401 and r.json()["errorCode"] == "SVCSTG.SWR.4010001"
    client.delete_instance_retention_policy(DeleteInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", policy_id=pid))
    with pytest.raises(ClientRequestException) as e:
        client.show_instance_retention_policy(ShowInstanceRetentionPolicyRequest(
            instance_id=project, namespace_name="other", policy_id=pid))
    assert e.value.status_code == 404
    # The next run removes a deleted policy's executions, tasks and sub-tasks.
    r = requests.post(f"http://{reg.host}/berth/jobs/retention/tick", auth=ADMIN)
    assert r.status_code == 200 and r.json()["result"]["executions_pruned"] == 1, r.text
    db = reg.db()
    left = db.execute("SELECT count(*) FROM kv WHERE key LIKE ? OR key LIKE ?",
                      (f"retention-exec/corp/{pid:020d}/%", f"retention-subtask/{eid:020d}/%")).fetchone()[0]
    db.close()
    assert left == 0


def test_a_scheduled_policy_runs_on_its_cron(env):
    reg, client, project, url = env
    image(url, "other/sched", tag="s1", layers=[b"sched 1"])
    image(url, "other/sched", tag="s2", layers=[b"sched 2"])
    pid = client.create_instance_retention_policy(CreateInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", body=policy(
            "every-2s", [rule("latestPushedK", 1, repos=("repoMatches", "sched"))],
            trigger="scheduled", cron="*/2 * * * * *"))).id
    deadline = time.time() + 30
    while True:
        listed = client.list_instance_retention_policy_executions(ListInstanceRetentionPolicyExecutionsRequest(
            instance_id=project, namespace_name="other", policy_id=pid))
        done = [x for x in listed.executions if x.status == "Succeed"]
        if done:
            break
        assert time.time() < deadline, "the schedule never ran"
        time.sleep(0.5)
    assert done[0].trigger == "scheduled" and not done[0].dry_run
    assert skopeo_tags(reg, "other/sched") == ["s2"]
    client.delete_instance_retention_policy(DeleteInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="other", policy_id=pid))


def test_kill_9_during_an_execution_then_restart_finishes_each_tag_once(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=QUIET).start()
    try:
        client, project = tenant_client(reg, "corp", "corp-pw", ["bulk"])
        url = f"http://corp:corp-pw@{reg.host}"
        n = 1200
        digest = tag_many(url, "bulk/many", n)
        pid = client.create_instance_retention_policy(CreateInstanceRetentionPolicyRequest(
            instance_id=project, namespace_name="bulk", body=policy("two", [rule("latestPushedK", 2)]))).id
        execute(client, project, "bulk", pid, dry_run=False)

        def recorded():
            db = reg.db()
            try:
                return db.execute("SELECT count(*) FROM kv WHERE key LIKE 'retention-subtask/%'").fetchone()[0]
            finally:
                db.close()

        # kill -9 once the execution has begun removing tags.
        deadline = time.time() + 30
        while recorded() < 50:
            assert time.time() < deadline
            time.sleep(0.01)
        reg.kill()
        cut = recorded()
        assert 0 < cut < n, f"the kill came mid-execution ({cut} of {n} tags recorded)"
        reg = Registry(tmp_path / "data", port=reg.port, extra_args=QUIET).start()
        # The request survives: the restarted host resumes the execution.
        listed = client.list_instance_retention_policy_executions(ListInstanceRetentionPolicyExecutionsRequest(
            instance_id=project, namespace_name="bulk", policy_id=pid))
        eid = listed.executions[0].id
        done = wait(client, project, "bulk", pid, eid, timeout=120)
        assert done.status == "Succeed", done
        subs = subtasks(client, project, "bulk", pid, eid)["bulk/many"]
        assert len(subs) == n, "each tag recorded once"
        removed = sorted(t for t, (a, s, _) in subs.items() if a == "DEL" and s == "Succeed")
        assert removed == [f"t{i:04d}" for i in range(n - 2)]
        r = requests.get(f"{url}/v2/bulk/many/tags/list")
        assert r.json()["tags"] == [f"t{n - 2:04d}", f"t{n - 1:04d}"]
        aged = [e["tag"] for e in all_events(reg, "tag.aged_out")]
        assert sorted(aged) == removed, "one event per removed tag"
        r = requests.get(f"{url}/v2/bulk/many/manifests/{digest}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200
    finally:
        reg.stop()


def test_names_are_unique_under_concurrency_and_policies_go_with_their_organization(env):
    reg, client, project, url = env
    from concurrent.futures import ThreadPoolExecutor
    from huaweicloudsdkswr.v2 import CreateNamespaceRequest, CreateNamespaceRequestBody, DeleteNamespacesRequest
    client.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="gone")))

    def create(k):  # one name, distinct bodies (none is a replay)
        try:
            return client.create_instance_retention_policy(CreateInstanceRetentionPolicyRequest(
                instance_id=project, namespace_name="gone",
                body=policy("same", [rule("latestPushedK", k)], trigger="scheduled", cron="* * * * * *"))).id
        except ClientRequestException as e:
            return -e.status_code
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(create, range(1, 7)))
    created = [a for a in answers if a > 0]
    assert len(created) == 1 and set(answers) - set(created) == {-409}, answers
    listed = client.list_instance_retention_policies(ListInstanceRetentionPoliciesRequest(
        instance_id=project, name="same"))
    assert listed.total == 1
    client.delete_namespaces(DeleteNamespacesRequest(namespace="gone"))
    db = reg.db()
    left = [k for (k, v) in db.execute("SELECT key, value FROM kv WHERE key LIKE 'retention-policy/corp/%'")
            if json.loads(v)["namespace"] == "gone"]
    db.close()
    assert left == [], "the organization's policies went with it"
    # A new organization of the name starts with none.
    time.sleep(1.1)  # not the first create's signed request again (a replay)
    client.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="gone")))
    pid = client.create_instance_retention_policy(CreateInstanceRetentionPolicyRequest(
        instance_id=project, namespace_name="gone", body=policy("same", [rule("latestPushedK", 1)]))).id
    assert pid not in created
