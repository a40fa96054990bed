"""Round trips with real clients: skopeo, podman and oras (oras-py)."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import requests

from conftest import layer_tar_gz, sha256, write_oci_layout

# skopeo and podman as root keep a blob-info cache and then mount instead of
# uploading; give each run its own empty cache so uploads really happen.
def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
    return r


def skopeo(*args, tmp):
    return run(["skopeo", "--tmpdir", str(tmp), *args], env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp), HOME=str(tmp)))


def layout_digests(path: Path):
    return {p.name for p in (path / "blobs" / "sha256").iterdir()}


def test_skopeo_round_trip_multilayer(registry, tmp_path):
    src = tmp_path / "src"
    layers = [layer_tar_gz({f"f{i}": os.urandom(200_000)}, seed=i) for i in range(3)]
    write_oci_layout(src, {"v1": layers})
    digest_file = tmp_path / "digest"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", registry.creds, "--digestfile", str(digest_file),
           f"oci:{src}:v1", f"docker://{registry.host}/clients/skopeo:v1", tmp=tmp_path)
    pushed = digest_file.read_text().strip()
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", registry.creds, f"docker://{registry.host}/clients/skopeo:v1", tmp=tmp_path).stdout
    assert sha256(raw.encode()) == pushed
    assert len(json.loads(raw)["layers"]) == 3
    dst = tmp_path / "dst"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", registry.creds, f"docker://{registry.host}/clients/skopeo:v1", f"oci:{dst}:v1", tmp=tmp_path)
    assert layout_digests(src) <= layout_digests(dst) | {pushed.split(":")[1]}
    for p in (dst / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    skopeo("delete", "--tls-verify=false", "--creds", registry.creds, f"docker://{registry.host}/clients/skopeo@{pushed}", tmp=tmp_path)
    assert requests.get(f"{registry.url}/v2/clients/skopeo/manifests/v1").status_code == 404


def test_skopeo_multiarch_index(registry, tmp_path):
    src = tmp_path / "src"
    write_oci_layout(src, {"multi": [layer_tar_gz({"a": b"arch layer"})]}, index_platforms=["amd64", "arm64"])
    skopeo("copy", "--all", "--dest-tls-verify=false", "--dest-creds", registry.creds, f"oci:{src}:multi", f"docker://{registry.host}/clients/multi:v1", tmp=tmp_path)
    r = requests.get(f"{registry.url}/v2/clients/multi/manifests/v1", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 200
    archs = sorted(m["platform"]["architecture"] for m in r.json()["manifests"])
    assert archs == ["amd64", "arm64"]
    dst = tmp_path / "dst"
    skopeo("copy", "--all", "--src-tls-verify=false", "--src-creds", registry.creds, f"docker://{registry.host}/clients/multi:v1", f"oci:{dst}:v1", tmp=tmp_path)
    index = json.loads((dst / "index.json").read_text())
    top = index["manifests"][0]["digest"].split(":")[1]
    assert hashlib.sha256((dst / "blobs" / "sha256" / top).read_bytes()).hexdigest() == top


def test_podman_push_pull(registry, tmp_path):
    src = tmp_path / "src"
    write_oci_layout(src, {"v1": [layer_tar_gz({"hello.txt": b"hello from podman test"})]})
    root = tmp_path / "root"
    runroot = Path("/tmp") / f"prr{registry.port}"
    shutil.rmtree(runroot, ignore_errors=True)
    base = ["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs",
            "--events-backend", "file", "--cgroup-manager", "cgroupfs", "--tmpdir", str(tmp_path)]
    env = dict(os.environ, HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    try:
        loaded = run([*base, "pull", f"oci:{src}:v1"], env=env).stdout.strip().splitlines()[-1]
        ref = f"{registry.host}/clients/podman:v1"
        run([*base, "tag", loaded, ref], env=env)
        run([*base, "push", "--tls-verify=false", "--creds", registry.creds, ref], env=env)
        assert requests.get(f"{registry.url}/v2/clients/podman/tags/list").json()["tags"] == ["v1"]
        run([*base, "rmi", "-a", "-f"], env=env)
        run([*base, "pull", "--tls-verify=false", "--creds", registry.creds, ref], env=env)
        images = run([*base, "images", "--format", "{{.Repository}}:{{.Tag}}"], env=env).stdout
        assert "clients/podman:v1" in images
    finally:
        subprocess.run([*base, "system", "reset", "-f"], capture_output=True, env=env)
        shutil.rmtree(runroot, ignore_errors=True)


def test_oras_push_pull_and_referrers(registry, tmp_path):
    import oras.client
    import oras.provider

    # oras-py keeps its first token even when a later request needs more
    # scope, so it is used with Basic credentials on every request.
    client = oras.client.OrasClient(hostname=registry.host, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth(*registry.creds.split(":"))
    chart = tmp_path / "mychart-0.1.0.tgz"
    chart.write_bytes(os.urandom(50_000))
    target = f"{registry.host}/clients/oras/chart:0.1.0"
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = client.push(files=[chart.name], target=target, manifest_config=None,
                          annotation_file=None, disable_path_validation=True)
        assert res.status_code == 201
        out = tmp_path / "out"
        files = client.pull(target=target, outdir=str(out))
        assert Path(files[0]).read_bytes() == chart.read_bytes()
    finally:
        os.chdir(old)
    # An SBOM that refers to the chart's manifest, then the referrers API.
    m = client.get_manifest(target)
    subject_body = requests.get(f"{registry.url}/v2/clients/oras/chart/manifests/0.1.0",
                                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    subject = subject_body.headers["Docker-Content-Digest"]
    empty = b"{}"
    requests.post(f"{registry.url}/v2/clients/oras/chart/blobs/uploads/", params={"digest": sha256(empty)}, data=empty)
    sbom = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
            "layers": [], "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": len(subject_body.content)}}
    body = json.dumps(sbom).encode()
    r = requests.put(f"{registry.url}/v2/clients/oras/chart/manifests/{sha256(body)}", data=body,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201
    client.prefix = "http"
    url = f"http://{registry.host}/v2/clients/oras/chart/referrers/{subject}"
    r = client.do_request(url, "GET")
    assert r.status_code == 200
    assert [x["artifactType"] for x in r.json()["manifests"]] == ["application/spdx+json"]
    assert m["layers"][0]["size"] == 50_000
