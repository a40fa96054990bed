"""The Spin build (`make spin`, infra/spin/spin.toml): every composed
component imports only what Spin's platform exports, checked with
`wasm-tools` against the WIT the spin-sdk crate ships; its manifest names
the components, routes and variables of ../../spin.toml; and (in the
`spin` pass, `BERTH_TEST_BACKEND=spin`, where the conformance tests of
test_protocol.py and skopeo's run on it too) it serves a registry on
PostgreSQL and S3 through its adapters."""

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import requests

from conftest import ON_SPIN, ROOT

SPIN_BUILD = ROOT / "target" / "spin"
ADAPTER_VARIABLES = {"metadata_postgres_url", "s3_endpoint", "s3_region", "s3_bucket", "s3_prefix",
                     "s3_access_key_id", "s3_secret_access_key", "token_signing_key", "sealing_key"}
# WASI 0.2, which Spin provides to every component (its platform world
# includes wasi:cli/imports@0.2 and wasi:http@0.2); Rust's wasm32-wasip2
# standard library imports from it. spin-sdk 7's WIT holds only 0.3 of most.
WASI_P2 = {"wasi:io", "wasi:clocks", "wasi:random", "wasi:cli", "wasi:filesystem", "wasi:sockets", "wasi:http"}


def spin_sdk_wit() -> Path:
    """The wit/ directory of the spin-sdk crate the components build with."""
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)
    [sdk] = [p for p in meta["packages"] if p["name"] == "spin-sdk"]
    return Path(sdk["manifest_path"]).parent / "wit"


def spin_interfaces():
    """{(package, interface): [versions]} of everything spin-sdk's WIT defines."""
    found = {}
    for f in spin_sdk_wit().rglob("*.wit"):
        text = f.read_text()
        m = re.search(r"^package\s+([\w-]+:[\w-]+)@([\w.+-]+)\s*;", text, re.M)
        if not m:
            continue
        for iface in re.findall(r"^\s*interface\s+([\w-]+)\s*\{", text, re.M):
            found.setdefault((m.group(1), iface), []).append(m.group(2))
    return found


def compatible(wanted: str, offered: str) -> bool:
    """Semver compatibility as wasmtime's linker applies it to imports:
    same major, and for 0.x the same minor."""
    w, o = wanted.split("-")[0].split("."), offered.split("-")[0].split(".")
    if w[0] != o[0]:
        return False
    return w[0] != "0" or w[1] == o[1]


def imports_of(wasm: Path):
    wit = subprocess.run(["wasm-tools", "component", "wit", str(wasm)], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"^\s*import\s+([\w-]+:[\w-]+)/([\w-]+)@([\w.+-]+)\s*;", wit, re.M), wit


def test_composed_components_import_only_spins_platform():
    manifest = tomllib.loads((ROOT / "spin.toml").read_text())
    offered = spin_interfaces()
    assert ("spin:postgres", "postgres") in offered and ("spin:variables", "variables") in offered
    for component in manifest["component"]:
        wasm = SPIN_BUILD / f"{component}.wasm"
        assert wasm.exists(), f"{wasm} missing: run `make spin`"
        imports, wit = imports_of(wasm)
        assert imports, wit
        # No import left unnamed (an inline instance would hide one).
        assert not re.search(r"^\s*import\s+[\w-]+\s*:\s*(interface|func)", wit, re.M), wit
        bad = []
        for package, iface, version in imports:
            ok = any(compatible(version, v) for v in offered.get((package, iface), []))
            ok = ok or (package in WASI_P2 and version.startswith("0.2."))
            if not ok:
                bad.append(f"{package}/{iface}@{version}")
        assert not bad, f"{component} imports what Spin does not export: {bad}"
        # Berth's capabilities are all provided inside.
        assert not any(p.startswith("berth:") for p, _, _ in imports), component
        assert re.search(r"^\s*export\s+wasi:http/handler@0\.3\.\d+;", wit, re.M), wit


def test_manifest_matches_the_application():
    app = tomllib.loads((ROOT / "spin.toml").read_text())
    spin = tomllib.loads((ROOT / "infra" / "spin" / "spin.toml").read_text())
    assert set(spin["component"]) == set(app["component"])
    routes = lambda m: sorted((t["route"], t["component"]) for t in m["trigger"]["http"])
    assert routes(spin) == routes(app)
    # Spin runs no cron trigger here: jobs are ticked over HTTP.
    assert "cron" not in spin["trigger"]
    for job in {t["component"] for t in app["trigger"]["cron"]}:
        assert (f"/berth/jobs/{job}/...", job) in routes(spin)
    for cid, c in spin["component"].items():
        assert c["source"] == f"../../target/spin/{cid}.wasm"
        assert "dependencies" not in c, cid
        variables = c.get("variables", {})
        assert ADAPTER_VARIABLES <= set(variables), (cid, ADAPTER_VARIABLES - set(variables))
        # Everything the component had, it still has.
        assert app["component"][cid].get("variables", {}).items() <= variables.items(), cid
        for name in variables:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert "{{ s3_endpoint }}" in c["allowed_outbound_hosts"]
        assert "postgres://{{ metadata_postgres_host }}" in c["allowed_outbound_hosts"]
    for name in ADAPTER_VARIABLES | {"metadata_postgres_host"}:
        assert name in spin["variables"], name
    # The config adapter refuses exactly the secrets: no component reads a
    # store's password or a key as a setting.
    source = (ROOT / "infra/spin/adapters/config-variables/src/lib.rs").read_text()
    refused = set(re.findall(r'"([a-z0-9_]+)"', source.split("pub const SECRETS", 1)[1].split("];", 1)[0]))
    secrets = {n for n, v in spin["variables"].items() if v.get("secret")}
    assert refused == secrets, (refused, secrets)


@pytest.mark.skipif(not ON_SPIN, reason="runs in the spin pass (BERTH_TEST_BACKEND=spin)")
def test_spin_build_keeps_state_in_postgres_and_the_bucket(fresh_registry):
    """A push through the Spin build lands where the adapters put it: the
    manifest in PostgreSQL's berth_kv, the layer in the bucket under the
    host's key layout; both survive a restart."""
    import hashlib
    reg = fresh_registry
    layer = b"spin build layer " * 1000
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    r = requests.post(f"{reg.url}/v2/spin/app/blobs/uploads/?digest={digest}", data=layer)
    assert r.status_code == 201, r.text
    assert reg.storage.exists(digest) and reg.storage.read(digest) == layer
    with reg.db() as db:
        keys = {k for (k,) in db.execute("SELECT key FROM kv").fetchall()}
    # The repository's link to the blob (berth_domain::keys::blob_link).
    assert f"blob/spin/app:{digest}" in keys, sorted(keys)[:20]
    reg.stop()
    reg.start()
    r = requests.get(f"{reg.url}/v2/spin/app/blobs/{digest}")
    assert r.status_code == 200 and r.content == layer


@pytest.mark.skipif(not ON_SPIN, reason="runs in the spin pass (BERTH_TEST_BACKEND=spin)")
def test_spin_build_serves_the_console(registry):
    """The console component on the Spin build: its page, a sign-in whose
    session the Spin build's registry and management API take, and CSRF
    refusals there too (the browser walk runs on the host build)."""
    reg = registry
    page = requests.get(f"{reg.anon_url}/console/")
    assert page.status_code == 200 and "/console/assets/app.js" in page.text
    assert requests.get(f"{reg.anon_url}/console/assets/app.js").status_code == 200
    s = requests.Session()
    r = s.post(f"{reg.anon_url}/console/api/session", json={"username": "admin", "password": reg.creds.split(":", 1)[1]})
    assert r.status_code == 201, r.text
    csrf = {"X-Berth-CSRF": r.json()["csrf"]}
    assert s.get(f"{reg.anon_url}/v2/manage/namespaces").status_code == 200
    assert s.post(f"{reg.anon_url}/v2/spin-console/app/blobs/uploads/").status_code == 403
    r = s.post(f"{reg.anon_url}/v2/spin-console/app/blobs/uploads/", headers=csrf)
    assert r.status_code == 202, r.text
    assert s.delete(f"{reg.anon_url}/console/api/session", headers=csrf).status_code == 204
    assert s.get(f"{reg.anon_url}/v2/manage/namespaces").status_code == 401


@pytest.mark.skipif(not ON_SPIN, reason="runs in the spin pass (BERTH_TEST_BACKEND=spin)")
def test_spin_build_streams_layers_past_one_part(registry):
    """Layers larger than one 16 MiB part go to the bucket as multipart
    uploads from the guest, monolithic and chunked, are published only
    under their true digest, and read back whole and by range."""
    import hashlib
    import os
    layer = os.urandom(20 << 20)
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    # A wrong digest publishes nothing.
    wrong = "sha256:" + "0" * 64
    r = requests.post(f"{registry.url}/v2/spin/big/blobs/uploads/?digest={wrong}", data=layer)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID", r.text
    assert not registry.storage.exists(wrong)
    # Chunked: two PATCHes, the first past one part.
    r = requests.post(f"{registry.url}/v2/spin/big/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    base = f"http://{registry.creds}@{registry.host}"
    cut = 17 << 20
    for start, chunk in ((0, layer[:cut]), (cut, layer[cut:])):
        r = requests.patch(base + location if location.startswith("/") else location, data=chunk,
                           headers={"Content-Range": f"{start}-{start + len(chunk) - 1}",
                                    "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
    sep = "&" if "?" in location else "?"
    r = requests.put((base + location if location.startswith("/") else location) + f"{sep}digest={digest}")
    assert r.status_code == 201, r.text
    assert registry.storage.read(digest) == layer
    r = requests.get(f"{registry.url}/v2/spin/big/blobs/{digest}")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest[7:]
    r = requests.get(f"{registry.url}/v2/spin/big/blobs/{digest}", headers={"Range": "bytes=16777200-16777300"})
    assert r.status_code == 206 and r.content == layer[16777200:16777301]


def test_iam_bootstrap_creates_the_administrator_once(tmp_path):
    """`berth iam bootstrap` (the Spin build's first step) makes the
    administrator on stores that have none, with the given password, and
    leaves stores that have tenants alone."""
    import os
    from conftest import ADMIN, BERTH, Registry
    reg = Registry(tmp_path / "data")
    reg.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(BERTH), "iam", "--data-dir", str(reg.data_dir), *reg.store_args, "bootstrap"]
    env = dict(os.environ, BERTH_ADMIN_PASSWORD=ADMIN[1])
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0 and 'administrator "admin" created' in first.stdout, first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr
    # The password given is the administrator's.
    reg.start()
    try:
        assert requests.get(f"{reg.url}/v2/").status_code == 200
        assert requests.get(f"http://admin:wrong@{reg.host}/v2/").status_code == 401
    finally:
        reg.stop()
