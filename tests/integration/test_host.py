"""Host behaviour: TLS, abandoned-upload expiry, structured logs."""

import json
import os
import subprocess
import time

import requests

from conftest import ADMIN, Registry


def test_https_with_configured_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    reg = Registry(tmp_path / "data", extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    # The readiness probe speaks plain HTTP; poll over TLS instead.
    reg.proc = subprocess.Popen([*reg_cmd(reg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, BERTH_ADMIN_PASSWORD=ADMIN[1]))
    try:
        deadline = time.time() + 60
        while True:
            try:
                r = requests.get(f"https://{reg.host}/v2/", verify=str(cert), timeout=1, auth=ADMIN)
                break
            except requests.RequestException:
                assert reg.proc.poll() is None, "berth exited"
                assert time.time() < deadline, "berth did not serve HTTPS"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json() == {}
        # Plain HTTP on the TLS port is refused.
        try:
            plain = requests.get(f"http://{reg.host}/v2/", timeout=2).status_code
        except requests.RequestException:
            plain = None
        assert plain != 200
    finally:
        reg.stop()


def reg_cmd(reg):
    from conftest import BERTH, ROOT
    return [str(BERTH), "serve", "--listen", reg.host, "--data-dir", str(reg.data_dir),
            "--manifest", str(ROOT / "spin.toml"), *reg.store_args, *reg.extra_args]


def test_abandoned_uploads_expire(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--upload-expiry-secs", "1", "--var", "gc_schedule=* * * * * *"]).start()
    try:
        loc = requests.post(f"{reg.url}/v2/exp/repo/blobs/uploads/").headers["Location"]
        requests.patch(f"{reg.url}{loc}", data=b"partial")
        assert requests.get(f"{reg.url}{loc}").status_code == 204
        deadline = time.time() + 15
        while requests.get(f"{reg.url}{loc}").status_code != 404:
            assert time.time() < deadline, "abandoned upload was never removed"
            time.sleep(0.5)
        r = requests.patch(f"{reg.url}{loc}", data=b"more")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert reg.storage.upload_ids() == set()
    finally:
        reg.stop()
    # The session's metadata record went with it.
    db = reg.db()
    assert db.execute("SELECT count(*) FROM kv WHERE key LIKE 'upload/%'").fetchone()[0] == 0


def test_json_logs(tmp_path):
    reg = Registry(tmp_path / "data", extra_args=["--log-json"]).start()
    reg.stop()
    lines = [json.loads(l) for l in reg.log.read_text().splitlines() if l.strip()]
    assert any(l.get("fields", {}).get("message") == "berth listening" for l in lines)
