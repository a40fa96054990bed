"""Online garbage collection (`berth_domain::gc`): what is collected, when,
and that nothing in use ever is."""
import json
import time

import pytest
import requests

from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    ExecuteGcScheduleRequest,
    ExecuteScheduleObj,
    ExecuteScheduleRequestBody,
    GcParameters,
    ListGcTasksRequest,
    ScheduleObj,
    ShowGcScheduleRequest,
    ShowGcTaskRequest,
    StopGcTaskRequest,
    UpdateGcScheduleRequest,
    UpdateScheduleRequestBody,
)

from conftest import ADMIN, Registry, image, push_blob, put_manifest, sha256, tenant_client

GRACE, FENCE = 3, 1
# Runs only when a test ticks it (or a task wakes it).
NO_SCHEDULE = ["--var", "gc_schedule=0 0 0 1 1 *"]


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path / "data", extra_args=[
        "--var", f"gc_grace_seconds={GRACE}", "--var", f"gc_fence_seconds={FENCE}",
        "--var", "gc_delete_untagged=true", *NO_SCHEDULE]).start()
    yield r
    r.stop()


def tick(reg):
    r = requests.post(f"http://{reg.host}/berth/jobs/gc/tick", auth=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["result"]["collection"]


def stored_blobs(reg):
    return reg.storage.digests()


def collect_until_quiet(reg, rounds=8):
    """Ticks until a run finds nothing more to do; the runs' outcomes summed."""
    total = {}
    for _ in range(rounds):
        out = tick(reg)
        for k, v in out.items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
        if out["next_due"] is None:
            return total
        time.sleep(max(0, out["next_due"] - time.time()) + 1.05)
    raise AssertionError(f"collection never finished: {total}")


def test_gc_frees_exactly_the_unreferenced_blobs_after_the_grace_window(reg):
    url = reg.url
    shared = b"shared base layer " * 100
    ma, da = image(url, "gc/app", layers=(shared, b"only in a " * 50), tag="a")
    mb, db = image(url, "gc/app", layers=(shared, b"only in b " * 50), tag="b",
                   config=b'{"architecture":"arm64","os":"linux"}')
    # Another repository uses the layer only image a had, by mount.
    only_a = ma["layers"][1]["digest"]
    r = requests.post(f"{url}/v2/gc/other/blobs/uploads/", params={"mount": only_a, "from": "gc/app"})
    assert r.status_code == 201
    image(url, "gc/other", layers=(b"only in a " * 50,), tag="x", config=b'{"os":"other"}')
    orphan = push_blob(url, "gc/app", b"uploaded, never used " * 10)
    before = stored_blobs(reg)

    # Untag a: its manifest is garbage once the grace has passed; its
    # config (used by nothing else) after that; the orphan too.
    assert requests.delete(f"{url}/v2/gc/app/manifests/a").status_code == 202
    out = tick(reg)
    assert out["blobs_deleted"] == 0 and out["manifests_deleted"] == 0 and out["blobs_marked"] == 0
    assert stored_blobs(reg) == before
    assert requests.get(f"{url}/v2/gc/app/manifests/{da}").status_code == 200

    total = collect_until_quiet(reg)
    config_a = ma["config"]["digest"]
    gone = {config_a, orphan}
    assert stored_blobs(reg) == before - gone
    assert total["blobs_deleted"] == 2 and total["manifests_deleted"] == 1
    sizes = {config_a: ma["config"]["size"], orphan: len(b"uploaded, never used " * 10)}
    assert total["bytes_freed"] == sum(sizes.values())
    for d in gone:
        assert requests.head(f"{url}/v2/gc/app/blobs/{d}").status_code == 404
        assert not reg.storage.exists(d)
    assert requests.get(f"{url}/v2/gc/app/manifests/{da}").status_code == 404
    # Everything b and gc/other use is intact and hashes to its digest.
    for repo, m in (("gc/app", mb), ("gc/other", None)):
        ref = "b" if repo == "gc/app" else "x"
        r = requests.get(f"{url}/v2/{repo}/manifests/{ref}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200
        m = r.json()
        for d in [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]:
            body = requests.get(f"{url}/v2/{repo}/blobs/{d}").content
            assert sha256(body) == d
    # Nothing more to collect, however often it runs.
    assert collect_until_quiet(reg).get("blobs_deleted", 0) == 0


def test_a_blob_reused_after_marking_is_kept(reg):
    url = reg.url
    layer = b"garbage that comes back " * 40
    m, d = image(url, "gc/back", layers=(layer,), tag="v1")
    assert requests.delete(f"{url}/v2/gc/back/manifests/{d}").status_code == 202
    ld = m["layers"][0]["digest"]
    # Wait until the layer is marked, then use it again: a HEAD (a client
    # checking before it pushes) and a manifest that references it.
    deadline = time.time() + 30
    while True:
        out = tick(reg)
        if out["blobs_marked"]:
            break
        assert time.time() < deadline
        time.sleep(1)
    assert requests.head(f"{url}/v2/gc/back/blobs/{ld}").status_code == 200
    cd = push_blob(url, "gc/back", b'{"reused":true}')
    m2 = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 15},
          "layers": [m["layers"][0]]}
    r, _, _ = put_manifest(url, "gc/back", "v2", m2)
    assert r.status_code == 201, r.text
    collect_until_quiet(reg)
    assert sha256(requests.get(f"{url}/v2/gc/back/blobs/{ld}").content) == ld
    assert reg.storage.exists(ld)


def wait_task(client, project, task_id, timeout=60):
    deadline = time.time() + timeout
    while True:
        t = client.show_gc_task(ShowGcTaskRequest(instance_id=project, gc_id=task_id))
        if t.job_status in ("Success", "Stopped", "Error"):
            return t
        assert time.time() < deadline, t
        time.sleep(0.3)


def execute(client, project, **params):
    return client.execute_gc_schedule(ExecuteGcScheduleRequest(instance_id=project, body=ExecuteScheduleRequestBody(
        schedule=ExecuteScheduleObj(type="Manual"), parameters=GcParameters(**params)))).id


def test_gc_tasks_through_the_official_sdk(tmp_path):
    # Untagged manifests stay by default (as SWR's delete_untagged=false);
    # a tenant's task or schedule parameters decide.
    reg = Registry(tmp_path / "data", extra_args=[
        "--var", "gc_grace_seconds=0", "--var", f"gc_fence_seconds={FENCE}", *NO_SCHEDULE]).start()
    try:
        client, project = tenant_client(reg, "acme", "acme-pw", ["shop"])
        url = f"http://acme:acme-pw@{reg.host}"
        m1, d1 = image(url, "shop/web", layers=(b"v1 layer " * 30,), tag="v1", config=b'{"v":1}')
        image(url, "shop/web", layers=(b"v2 layer " * 30,), tag="v1", config=b'{"v":2}')
        # v1 now names the second image: the first is untagged.
        assert requests.get(f"{url}/v2/shop/web/manifests/{d1}").status_code == 200
        before = stored_blobs(reg)

        # The background collection keeps it (no delete_untagged).
        collect_until_quiet(reg)
        assert requests.get(f"{url}/v2/shop/web/manifests/{d1}").status_code == 200

        # A dry run reports what would go and writes nothing.
        dry = wait_task(client, project, execute(client, project, workers=1, delete_untagged=True, dry_run=True))
        assert dry.job_status == "Success" and dry.job_kind == "MANUAL"
        assert dry.job_parameters.purged_manifests == 1 and dry.job_parameters.dry_run is True
        assert stored_blobs(reg) == before
        assert requests.get(f"{url}/v2/shop/web/manifests/{d1}").status_code == 200

        # The real run deletes the untagged manifest and, after the fence,
        # the blobs only it used.
        task = wait_task(client, project, execute(client, project, workers=2, delete_untagged=True))
        p = task.job_parameters
        assert task.job_status == "Success", task
        assert p.purged_manifests == 1 and p.workers == 2
        gone = {m1["config"]["digest"], m1["layers"][0]["digest"]}
        assert stored_blobs(reg) == before - gone
        assert p.purged_blobs == 2 and p.freed_space == m1["config"]["size"] + m1["layers"][0]["size"]
        assert requests.get(f"{url}/v2/shop/web/manifests/{d1}").status_code == 404
        assert requests.get(f"{url}/v2/shop/web/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 200

        # Listing: newest first, paged by marker, filtered by status.
        listed = client.list_gc_tasks(ListGcTasksRequest(instance_id=project, limit=1))
        assert [t.id for t in listed.tasks] == [task.id] and listed.page_info.next_marker == str(task.id)
        rest = client.list_gc_tasks(ListGcTasksRequest(instance_id=project, limit=1, marker=listed.page_info.next_marker))
        assert [t.id for t in rest.tasks] == [dry.id] and (rest.page_info is None or rest.page_info.next_marker is None)
        assert client.list_gc_tasks(ListGcTasksRequest(instance_id=project, status="Error")).tasks == []

        # A finished task cannot be stopped; unknown ones are 404.
        with pytest.raises(ClientRequestException) as e:
            client.stop_gc_task(StopGcTaskRequest(instance_id=project, gc_id=task.id))
        assert e.value.status_code == 409
        with pytest.raises(ClientRequestException) as e:
            client.show_gc_task(ShowGcTaskRequest(instance_id=project, gc_id=999999))
        assert e.value.status_code == 404

        # The schedule: none at first, then custom (and it runs).
        shown = client.show_gc_schedule(ShowGcScheduleRequest(instance_id=project))
        assert shown.schedule.type == "None" and shown.parameters.delete_untagged is False
        client.update_gc_schedule(UpdateGcScheduleRequest(instance_id=project, body=UpdateScheduleRequestBody(
            schedule=ScheduleObj(type="Custom", cron="* * * * * *"), parameters=GcParameters(workers=1, delete_untagged=True))))
        shown = client.show_gc_schedule(ShowGcScheduleRequest(instance_id=project))
        assert shown.schedule.type == "Custom" and shown.schedule.cron == "* * * * * *"
        assert shown.schedule.next_scheduled_time and shown.parameters.delete_untagged is True
        time.sleep(1.1)
        tick(reg)
        kinds = [t.job_kind for t in client.list_gc_tasks(ListGcTasksRequest(instance_id=project)).tasks]
        assert "SCHEDULE" in kinds, kinds
        client.update_gc_schedule(UpdateGcScheduleRequest(instance_id=project, body=UpdateScheduleRequestBody(
            schedule=ScheduleObj(type="None"))))
        assert client.show_gc_schedule(ShowGcScheduleRequest(instance_id=project)).parameters.delete_untagged is True

        # Bad input: SWR error JSON.
        for body in [
            ExecuteScheduleRequestBody(schedule=ExecuteScheduleObj(type="Manual"), parameters=GcParameters(workers=0)),
            ExecuteScheduleRequestBody(schedule=ExecuteScheduleObj(type="Manual"), parameters=GcParameters(workers=6)),
            ExecuteScheduleRequestBody(schedule=ExecuteScheduleObj(type="Custom"), parameters=GcParameters(workers=1)),
        ]:
            with pytest.raises(ClientRequestException) as e:
                client.execute_gc_schedule(ExecuteGcScheduleRequest(instance_id=project, body=body))
            assert e.value.status_code == 400 and e.value.error_code == "SVCSTG.SWR.4000001", e.value
        for sched in [ScheduleObj(type="Custom"), ScheduleObj(type="Custom", cron="0 0 * * *"),
                      ScheduleObj(type="Custom", cron="not a cron at all"), ScheduleObj(type="Daily")]:
            with pytest.raises(ClientRequestException) as e:
                client.update_gc_schedule(UpdateGcScheduleRequest(instance_id=project, body=UpdateScheduleRequestBody(
                    schedule=sched, parameters=GcParameters(workers=1))))
            assert e.value.status_code == 400, sched
        # Asked for at once (distinct bodies, so none is a replay): one task.
        from concurrent.futures import ThreadPoolExecutor

        def ask(workers):
            try:
                return execute(client, project, workers=workers, dry_run=True)
            except ClientRequestException as e:
                return e.status_code
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(ask, range(1, 6)))
        started = [a for a in answers if a > 1000 or a not in (409,)]
        assert len(started) == 1 and answers.count(409) == 4, answers
        wait_task(client, project, started[0])
        # Only the tenant's administrators.
        reg.iam("user-create", "acme", "dev", "--password", "dev-pw")
        dev_key = reg.iam("key-create", "acme", "dev")
        from huaweicloudsdkcore.auth.credentials import BasicCredentials
        from huaweicloudsdkswr.v2 import SwrClient
        dev = SwrClient.new_builder().with_credentials(
            BasicCredentials(dev_key["ak"], dev_key["sk"], project)).with_endpoints([reg.anon_url]).build()
        with pytest.raises(ClientRequestException) as e:
            dev.list_gc_tasks(ListGcTasksRequest(instance_id=project))
        assert e.value.status_code == 403
    finally:
        reg.stop()


def test_usage_matches_what_storage_holds_before_and_after_gc(tmp_path):
    """SWR's overview `store_space` is, per organization, the sum of the
    sizes of its distinct blobs: what the blob files on disk add up to."""
    from huaweicloudsdkswr.v2 import ShowDomainOverviewRequest
    reg = Registry(tmp_path / "data", extra_args=[
        "--var", "gc_grace_seconds=0", "--var", f"gc_fence_seconds={FENCE}",
        "--var", "gc_delete_untagged=true", *NO_SCHEDULE]).start()
    try:
        client, _ = tenant_client(reg, "acme", "acme-pw", ["shop", "tools"])
        url = f"http://acme:acme-pw@{reg.host}"
        base = b"base layer shared by everyone " * 200
        pushed = {}
        for repo, extra, tag in [("shop/a", b"a only " * 90, "1"), ("shop/b", b"b only " * 70, "1"),
                                 ("tools/x", b"x only " * 50, "1"), ("shop/a", b"a two " * 40, "2")]:
            cfg = json.dumps({"repo": repo, "tag": tag}).encode()
            m, d = image(url, repo, layers=(base, extra), tag=tag, config=cfg)
            pushed[(repo, tag)] = (m, d)

        def on_disk():
            # Each organization's distinct digests, sized from the files.
            per_org = {}
            for (repo, tag), (m, _) in pushed.items():
                r = requests.get(f"{url}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
                if r.status_code != 200:
                    continue
                for d in [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]:
                    per_org.setdefault(repo.split("/")[0], set()).add(d)
            return sum(reg.storage.size(d) for ds in per_org.values() for d in ds)

        overview = lambda: client.show_domain_overview(ShowDomainOverviewRequest()).store_space
        assert overview() == on_disk() > 0
        # The base layer counts once in shop, once in tools.
        assert overview() == len(base) * 2 + sum(
            m["config"]["size"] + m["layers"][1]["size"] for m, _ in pushed.values())

        # Delete image shop/a:2 and collect: usage drops by exactly its own blobs.
        m2, d2 = pushed[("shop/a", "2")]
        before = overview()
        assert requests.delete(f"{url}/v2/shop/a/manifests/{d2}").status_code == 202
        collect_until_quiet(reg)
        del pushed[("shop/a", "2")]
        assert overview() == on_disk() == before - m2["config"]["size"] - m2["layers"][1]["size"]
        assert not reg.storage.exists(m2["layers"][1]["digest"])
    finally:
        reg.stop()


def test_scrub_finds_orphans_corrupt_and_missing_blobs_and_repairs_what_it_safely_can(reg):
    url = reg.url
    m, d = image(url, "scrub/app", layers=(b"good layer " * 20, b"to corrupt " * 20, b"to lose " * 20), tag="v1")
    good, corrupt, lost = (l["digest"] for l in m["layers"])
    reg.storage.write(corrupt, b"bit rot " * 20)
    reg.storage.delete(lost)
    # Bytes nobody links (left by a crash, or copied in by hand).
    stray = b"stray bytes"
    reg.storage.write(sha256(stray), stray)

    scrub = lambda: requests.post(f"http://{reg.host}/berth/jobs/scrub/tick", auth=ADMIN)
    assert requests.post(f"http://{reg.host}/berth/jobs/scrub/tick").status_code == 401
    r = scrub()
    assert r.status_code == 200, r.text
    rep = r.json()["result"]
    assert rep["blobs_checked"] == 4  # the config, the good and the corrupt layer, the stray bytes
    assert rep["orphans"] == 1 and rep["orphans_queued"] == [sha256(stray)]
    assert rep["corrupt_total"] == 1 and rep["corrupt"][0]["digest"] == corrupt
    assert rep["corrupt"][0]["hashes_to"] == sha256(b"bit rot " * 20)
    assert rep["corrupt"][0]["referenced_by"] == [f"scrub/app@{d}"]
    assert rep["missing_total"] == 1 and rep["missing"][0] == {
        "repository": "scrub/app", "digest": lost, "referenced_by": [f"scrub/app@{d}"]}
    # Repaired: bad bytes are never served; clients see the two blobs
    # missing and upload them again, which makes the image whole.
    assert not reg.storage.exists(corrupt)
    for dg in (corrupt, lost):
        assert requests.head(f"{url}/v2/scrub/app/blobs/{dg}").status_code == 404
    assert sha256(requests.get(f"{url}/v2/scrub/app/blobs/{good}").content) == good
    push_blob(url, "scrub/app", b"to corrupt " * 20)
    push_blob(url, "scrub/app", b"to lose " * 20)
    for dg in (corrupt, lost):
        assert sha256(requests.get(f"{url}/v2/scrub/app/blobs/{dg}").content) == dg
    # A second scrub finds nothing wrong; the stray bytes go with the next
    # collections.
    rep = scrub().json()["result"]
    assert rep["corrupt_total"] == 0 and rep["missing_total"] == 0
    collect_until_quiet(reg)
    assert not reg.storage.exists(sha256(stray))
    assert requests.get(f"http://{reg.host}/berth/jobs/scrub", auth=ADMIN).json()["last_run"]["outcome"] == "succeeded"


def test_kill_9_during_gc_then_restart_loses_nothing_in_use_and_resumes(tmp_path):
    args = ["--var", "gc_grace_seconds=0", "--var", f"gc_fence_seconds={FENCE}",
            "--var", "gc_delete_untagged=true", *NO_SCHEDULE]
    reg = Registry(tmp_path / "data", extra_args=args).start()
    url = reg.url
    live = {}
    try:
        for i in range(240):
            layers = [b"image %d layer %d " % (i, j) * 8 for j in range(5)]
            if i % 8 == 0:
                layers.append(b"shared by the live images " * 8)
            m, d = image(url, "crash/app", layers=layers, tag=f"t{i}", config=b'{"i":%d}' % i)
            if i % 8 == 0:
                live[f"t{i}"] = m
            else:
                assert requests.delete(f"{url}/v2/crash/app/manifests/{d}").status_code == 202
        time.sleep(1.1)
        first = tick(reg)
        assert first["blobs_marked"] > 1000, str(first)
        time.sleep(FENCE + 0.2)
        # Kill the host while the next run deletes.
        reg.kill_during_tick("gc", after=0.15)
        partly = stored_blobs(reg)
        reg = Registry(tmp_path / "data", port=reg.port, extra_args=args).start()

        def intact():
            for tag, m in live.items():
                r = requests.get(f"{url}/v2/crash/app/manifests/{tag}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
                assert r.status_code == 200
                for d in [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]:
                    assert sha256(requests.get(f"{url}/v2/crash/app/blobs/{d}").content) == d, (tag, d)

        intact()
        # The lease of the killed run was released at start: the next run
        # goes at once, resumes, and finishes the job.
        out = tick(reg)
        collect_until_quiet(reg)
        intact()
        wanted = {d for m in live.values() for d in [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]}
        assert stored_blobs(reg) == wanted, (len(partly), len(stored_blobs(reg)), len(wanted))
        print(f"killed with {len(partly)} blobs stored; first run after restart: {out}")
    finally:
        reg.stop()


def test_each_tenant_keeps_its_newest_100_finished_gc_tasks(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=NO_SCHEDULE).start()
    try:
        client, project = tenant_client(reg, "acme", "acme-pw", ["shop"])
        # 130 finished tasks, as the gc job records them (ids 1..130), plus
        # one still pending (131): seeded in the stopped registry.
        reg.stop()
        db = reg.db()
        version = db.execute("SELECT max(version) FROM kv").fetchone()[0]
        for i in range(1, 132):
            task = {"id": i, "job_kind": "MANUAL", "status": "Success" if i <= 130 else "Pending",
                    "parameters": {"workers": 1, "delete_untagged": False, "dry_run": True},
                    "created": 1000 + i, "updated": 1000 + i}
            version += 1
            db.execute("INSERT INTO kv (key, value, version) VALUES (?, ?, ?)",
                       (f"gc/task/acme/{999_999_999_999 - i:012d}", json.dumps(task).encode(), version))
            version += 1
            db.execute("INSERT INTO kv (key, value, version) VALUES (?, ?, ?)",
                       (f"gc/task-figures/acme/{i}", b'{"blobs":0,"manifests":0,"bytes":0}', version))
        db.commit()
        db.close()
        reg.start()
        r = requests.post(f"http://{reg.host}/berth/jobs/gc/tick", auth=ADMIN)
        assert r.status_code == 200 and r.json()["result"]["tasks_pruned"] == 31, r.text
        db = reg.db()
        ids = sorted(json.loads(v)["id"] for (v,) in db.execute("SELECT value FROM kv WHERE key LIKE 'gc/task/acme/%'"))
        figures = db.execute("SELECT count(*) FROM kv WHERE key LIKE 'gc/task-figures/acme/%'").fetchone()[0]
        db.close()
        # The newest 100 (the pending one counts among them) stay, with
        # their figures; the 31 oldest go.
        assert ids == list(range(32, 132)) and figures == 100
        listed = client.list_gc_tasks(ListGcTasksRequest(instance_id=project, limit=100))
        assert [t.id for t in listed.tasks][:2] == [131, 130]
    finally:
        reg.stop()
