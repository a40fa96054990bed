"""containerd (the runtime under Kubernetes nodes) pulls, unpacks and
pushes through Berth's token flow with each kind of credential: a user's
password, SWR's long-term AK login and a temporary login key; anonymously
it pulls a public repository and not a private one."""

import base64
import gzip
import hashlib
import hmac
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkswr.v2 import CreateSecretRequest, SwrClient, UpdateRepoRequest, UpdateRepoRequestBody

from conftest import Registry, layer_tar_gz, push_blob, put_manifest, sha256


@pytest.fixture(scope="module")
def containerd():
    """A private containerd daemon (native snapshotter, no CRI) on a socket
    of its own."""
    home = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    sock = home / "c.sock"
    (home / "config.toml").write_text(f"""version = 2
root = "{home}/root"
state = "{home}/state"
[grpc]
  address = "{sock}"
[plugins."io.containerd.grpc.v1.cri"]
  disable = true
""")
    log = open(home / "log", "wb")
    proc = subprocess.Popen(["containerd", "--config", str(home / "config.toml")], stdout=log, stderr=log)
    deadline = time.time() + 30
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert sock.exists(), (home / "log").read_text()

    def ctr(*args):
        return subprocess.run(["ctr", "--address", str(sock), *args], capture_output=True, text=True, timeout=300)

    yield ctr
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("containerd") / "data").start()
    acme = reg.iam("tenant-create", "acme", "--password", "acme-pw")
    reg.iam("user-create", "acme", "dev", "--password", "dev-pw", "--policy", "SWR OperateAccess")
    key = reg.iam("key-create", "acme", "acme")
    sdk = SwrClient.new_builder().with_credentials(BasicCredentials(key["ak"], key["sk"], acme["project_id"])) \
        .with_endpoints([reg.anon_url]).build()
    url = f"http://acme:acme-pw@{reg.host}"
    digest = runnable_image(url, "ctr-src/app", "v1", b"from berth")
    yield reg, key, sdk, digest
    reg.stop()


def runnable_image(url, repo, tag, content):
    """An image containerd can unpack: its config lists the layer's diff id."""
    layer = layer_tar_gz({"hello.txt": content})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(layer))]}}).encode()
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": push_blob(url, repo, config),
                    "size": len(config)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": push_blob(url, repo, layer),
                     "size": len(layer)}]}
    r, digest, _ = put_manifest(url, repo, tag, m)
    assert r.status_code == 201, r.text
    return digest


def credential(kind, reg, key, sdk):
    if kind == "password":
        return "dev@acme", "dev-pw"
    if kind == "long-term":
        return f"berth@{key['ak']}", hmac.new(key["sk"].encode(), key["ak"].encode(), hashlib.sha256).hexdigest()
    auth = sdk.create_secret(CreateSecretRequest()).auths[reg.host].auth
    return tuple(base64.b64decode(auth).decode().split(":", 1))


@pytest.mark.parametrize("kind", ["password", "long-term", "temporary"])
def test_containerd_pulls_and_pushes_with_each_credential(world, containerd, kind):
    reg, key, sdk, digest = world
    user, password = credential(kind, reg, key, sdk)
    creds = f"{user}:{password}"
    src, dst = f"{reg.host}/ctr-src/app:v1", f"{reg.host}/ctr-{kind}/app:v1"
    # Without credentials the private image is refused.
    r = containerd("images", "pull", "--plain-http", src)
    assert r.returncode != 0 and "authorization" in r.stderr
    # With them it is pulled, verified and unpacked into a snapshot.
    r = containerd("images", "pull", "--plain-http", "--snapshotter", "native", "--user", creds, src)
    assert r.returncode == 0, r.stderr
    listed = containerd("images", "ls", "-q").stdout.split()
    assert src in listed
    check = containerd("images", "check", f"name=={src}")
    assert "complete" in check.stdout, check.stdout
    # Pushed into a new organization (a first push creates it).
    assert containerd("images", "tag", "--force", src, dst).returncode == 0
    r = containerd("images", "push", "--plain-http", "--user", creds, dst)
    assert r.returncode == 0, r.stderr
    got = requests.get(f"http://acme:acme-pw@{reg.host}/v2/ctr-{kind}/app/manifests/v1",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert got.status_code == 200 and got.headers["Docker-Content-Digest"] == digest
    # A wrong password is refused.
    r = containerd("images", "pull", "--plain-http", "--user", f"{user}:wrong{password}", src)
    assert r.returncode != 0
    containerd("images", "rm", src, dst)


def test_containerd_pulls_a_public_repository_anonymously(world, containerd):
    reg, _, sdk, _ = world
    url = f"http://acme:acme-pw@{reg.host}"
    runnable_image(url, "ctr-pub/app", "v1", b"public")
    ref = f"{reg.host}/ctr-pub/app:v1"
    assert containerd("images", "pull", "--plain-http", ref).returncode != 0
    sdk.update_repo(UpdateRepoRequest(namespace="ctr-pub", repository="app",
                                      body=UpdateRepoRequestBody(is_public=True)))
    r = containerd("images", "pull", "--plain-http", "--snapshotter", "native", ref)
    assert r.returncode == 0, r.stderr
    # Anonymous pushes are still refused.
    assert containerd("images", "tag", ref, f"{reg.host}/ctr-pub/app:v2").returncode == 0
    r = containerd("images", "push", "--plain-http", f"{reg.host}/ctr-pub/app:v2")
    assert r.returncode != 0
    assert requests.get(f"{url}/v2/ctr-pub/app/tags/list").json()["tags"] == ["v1"]
