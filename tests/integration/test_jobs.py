"""Scheduled jobs (issue 10): `[[trigger.cron]]` components run on their
schedule by the host and on `POST /berth/jobs/<job>/tick`, one run at a time
through a lease in metadata. The first job is gc (abandoned uploads)."""

import json
import subprocess
import threading
import time

import pytest
import requests

from conftest import ADMIN, BERTH, ROOT, Registry


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path / "data", extra_args=["--upload-expiry-secs", "1"]).start()
    r.iam("tenant-create", "acme", "--password", "acme-pw")
    yield r
    r.stop()


def tick(reg, auth=(ADMIN[0], ADMIN[1]), **kw):
    return requests.post(f"http://{reg.host}/berth/jobs/gc/tick", auth=auth, **kw)


def test_a_tick_runs_the_job_for_administrators_only(reg):
    loc = requests.post(f"{reg.url}/v2/jobs/app/blobs/uploads/").headers["Location"]
    time.sleep(1.5)
    r = tick(reg)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["job"] == "gc" and body["trigger"] == "tick"
    assert body["result"]["uploads_expired"] == 1 and body["result"]["upload_records_removed"] == 1
    assert requests.get(f"{reg.url}{loc}").status_code == 404
    status = requests.get(f"http://{reg.host}/berth/jobs/gc", auth=ADMIN).json()
    assert status["running"] is None
    assert status["last_run"]["outcome"] == "succeeded" and status["last_run"]["holder"] == body["run"]
    # Nobody else: anonymous, a tenant's own account, a registry token.
    r = tick(reg, auth=None)
    assert r.status_code == 401 and r.json()["errorCode"] == "SVCSTG.SWR.4010001"
    assert tick(reg, auth=("acme", "acme-pw")).status_code == 403
    assert tick(reg, auth=("admin", "wrong")).status_code == 401
    token = requests.get(f"{reg.url}/service/token", params={"service": "berth", "scope": "registry:catalog:*"}).json()["token"]
    assert tick(reg, auth=None, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert requests.get(f"http://{reg.host}/berth/jobs/gc/tick", auth=ADMIN).status_code == 405
    assert requests.post(f"http://{reg.host}/berth/jobs/gc/other", auth=ADMIN).status_code == 404


def test_a_held_lease_keeps_every_other_run_out_until_it_lapses(tmp_path):
    # Runs every second by schedule too: neither they nor ticks may run
    # while another holder's lease is valid.
    reg = Registry(tmp_path / "data", extra_args=["--var", "gc_schedule=* * * * * *"]).start()
    try:
        deadline = time.time() + 10
        while requests.get(f"http://{reg.host}/berth/jobs/gc", auth=ADMIN).json()["last_run"] is None:
            assert time.time() < deadline, "the schedule never ran the job"
            time.sleep(0.3)
        assert requests.get(f"http://{reg.host}/berth/jobs/gc", auth=ADMIN).json()["last_run"]["trigger"] == "schedule"
        # Another host holds the lease (written as that host would).
        db = reg.db()
        lease = {"holder": "other-host", "acquired": int(time.time()), "expires": int(time.time()) + 600}
        with db:
            db.execute("INSERT OR REPLACE INTO kv (key, value, version) VALUES ('job/gc/lease', ?, 9000000000)",
                       (json.dumps(lease).encode(),))
        time.sleep(1.2)
        before = requests.get(f"http://{reg.host}/berth/jobs/gc", auth=ADMIN).json()["last_run"]
        r = tick(reg)
        assert r.status_code == 409 and r.json()["errorCode"] == "SVCSTG.SWR.4090003"
        assert "other-host" in r.json()["errorMsg"]
        time.sleep(2.5)
        status = requests.get(f"http://{reg.host}/berth/jobs/gc", auth=ADMIN).json()
        assert status["running"]["holder"] == "other-host"
        assert status["last_run"] == before, "a run went ahead under another holder's lease"
        # The lease lapses: the next run takes it over.
        lease["expires"] = int(time.time()) - 1
        with db:
            db.execute("UPDATE kv SET value = ? WHERE key = 'job/gc/lease'", (json.dumps(lease).encode(),))
        deadline = time.time() + 10
        while True:
            r = tick(reg)
            if r.status_code == 200:
                break
            assert r.status_code == 409 and time.time() < deadline
            time.sleep(0.2)
    finally:
        reg.stop()


def test_concurrent_ticks_run_one_at_a_time(reg):
    # Many sessions make a run take a while.
    for _ in range(200):
        requests.post(f"{reg.url}/v2/jobs/many/blobs/uploads/")
    answers, barrier = [], threading.Barrier(6)

    def call():
        barrier.wait()
        answers.append(tick(reg))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {200, 409} and 200 in codes, codes
    for r in answers:
        if r.status_code == 409:
            assert "already running" in r.json()["errorMsg"]


def test_a_bad_schedule_stops_the_host_with_a_clear_error(tmp_path):
    p = subprocess.run([str(BERTH), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                        "--manifest", str(ROOT / "spin.toml"), "--var", "gc_schedule=every day"],
                       capture_output=True, text=True, timeout=120, env={"BERTH_ADMIN_PASSWORD": ADMIN[1], "PATH": "/usr/bin:/bin"})
    assert p.returncode != 0
    assert "is not a cron expression" in p.stderr and "every day" in p.stderr
