"""Image sync and replication (issue 12): registries registered through the
official SDK's enterprise registries API, shared-edition sync rules and
manual syncs copying to a second Berth and to CNCF Distribution 2.8
(Debian's docker-registry), each started here on loopback; skopeo reads
what arrived and the digests are compared with the source's."""

import hashlib
import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateImageSyncRepoRequest, CreateImageSyncRepoRequestBody, CreateInstanceRegistryRequest,
    CreateManualImageSyncRepoRequest, CreateManualImageSyncRepoRequestBody, CreateRegistryRequestBody,
    Credential, DeleteImageSyncRepoRequest, DeleteImageSyncRepoRequestBody, DeleteInstanceRegistryRequest,
    ListImageAutoSyncReposDetailsRequest, ListInstanceRegistriesRequest, ListSyncRegionsRequest,
    ShowInstanceRegistryRequest, ShowSyncJobRequest,
)

from conftest import (Registry, all_events, free_port, image, layer_tar_gz, push_blob, put_manifest, sha256,
                      signed_call, skopeo_push, tenant_client, write_oci_layout)


class Distribution:
    """CNCF Distribution 2.8 (Debian's docker-registry), filesystem storage."""

    def __init__(self, root):
        self.root = root
        self.port = free_port()
        self.proc = None

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"http://{self.host}"

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        # A fixed secret signs upload session URLs, so a session survives
        # a restart (as in any multi-instance deployment).
        config.write_text(
            "version: 0.1\nlog: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.host}, secret: replication-test}}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "log", "ab"))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start")

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()

    kill = stop


class SlowProxy:
    """An HTTP proxy in front of a registry that holds every manifest request
    `delay` seconds and counts how many it holds at once, by method: the
    slow remote that shows whether tags are copied one at a time."""

    def __init__(self, upstream, delay=1.0):
        proxy = self
        self.upstream = upstream
        self.delay = delay
        self.lock = threading.Lock()
        self.now = {}
        self.most = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += chunk
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def forward(self):
                data = self.body()
                held = "/manifests/" in self.path
                if held:
                    with proxy.lock:
                        proxy.now[self.command] = proxy.now.get(self.command, 0) + 1
                        proxy.most[self.command] = max(proxy.most.get(self.command, 0), proxy.now[self.command])
                    time.sleep(proxy.delay)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("transfer-encoding", "content-length", "connection")}
                    r = requests.request(self.command, proxy.upstream + self.path, data=data, headers=headers,
                                         allow_redirects=False, timeout=60)
                finally:
                    if held:
                        with proxy.lock:
                            proxy.now[self.command] -= 1
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection", "content-encoding"):
                        self.send_header(k, v)
                length = r.headers.get("Content-Length", "0") if self.command == "HEAD" else str(len(r.content))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(r.content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    base = tmp_path_factory.mktemp("replication")
    src = Registry(base / "src", extra_args=["--outbound-allow", "127.0.0.1"]).start()
    dst = Registry(base / "dst").start()
    dist = Distribution(base / "dist").start()
    client, project = tenant_client(src, "acme", "acme-pw", ["team"])
    key = src.iam("key-create", "acme", "acme")
    tenant_client(dst, "dr", "dr-pw", ["mirror"])
    s = {"src": src, "dst": dst, "dist": dist, "client": client, "project": project, "key": key}
    # The registries every test copies with, registered through the SDK.
    s["ids"] = {"dr-berth": register(s, "dr-berth", "berth", dst.anon_url, "dr", "dr-pw").id,
                "dr-dist": register(s, "dr-dist", "distribution", dist.url).id}
    yield s
    for r in (src, dst):
        r.stop()
    dist.stop()


def register(s, name, kind, url, user="", password=""):
    return s["client"].create_instance_registry(CreateInstanceRegistryRequest(
        instance_id=s["project"], body=CreateRegistryRequestBody(
            name=name, type=kind, url=url, insecure=False,
            credential=Credential(type="basic", access_key=user, access_secret=password))))


def raw_manifest(host, ref, creds=None, tmp=None):
    """`skopeo inspect --raw`: the manifest bytes the registry serves."""
    cmd = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    cmd += ["--creds", creds] if creds else ["--no-creds"]
    r = subprocess.run([*cmd, f"docker://{host}/{ref}"], capture_output=True, timeout=120,
                       env=dict(os.environ, HOME=str(tmp)) if tmp else None)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def digest_of(raw):
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def pull_all(host, ref, dest, creds=None):
    """`skopeo copy` of the whole image (every blob fetched and verified)."""
    cmd = ["skopeo", "copy", "--all", "--src-tls-verify=false"]
    cmd += ["--src-creds", creds] if creds else ["--src-no-creds"]
    r = subprocess.run([*cmd, f"docker://{host}/{ref}", f"oci:{dest}:x"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()


def sync_jobs(s, repo="app", limit=100):
    r = s["client"].show_sync_job(ShowSyncJobRequest(
        namespace="team", repository=repo, filter=f"limit::{limit}|offset::0"))
    return r.body or []


def wait_jobs(s, done, repo="app", timeout=60):
    """Waits until `done(jobs)` holds for the repository's sync jobs; returns them."""
    deadline = time.time() + timeout
    while True:
        jobs = sync_jobs(s, repo)
        if done(jobs):
            return jobs
        assert time.time() < deadline, [(j.tag, j.remote_region_id, j.status) for j in jobs]
        time.sleep(0.3)


def test_registries_are_checked_and_never_show_secrets(sites):
    s = sites
    listed = s["client"].list_instance_registries(ListInstanceRegistriesRequest(instance_id=s["project"]))
    assert {x.name for x in listed.registries} >= {"dr-berth", "dr-dist"}
    shown = s["client"].show_instance_registry(ShowInstanceRegistryRequest(
        instance_id=s["project"], registry_id=s["ids"]["dr-berth"]))
    assert shown.credential.access_key == "dr" and shown.credential.access_secret == ""
    assert shown.status == "healthy"
    assert "dr-pw" not in json.dumps(shown.to_json_object())
    regions = s["client"].list_sync_regions(ListSyncRegionsRequest()).body
    assert {x.region_id for x in regions} >= {"dr-berth", "dr-dist"}
    # Bad input: each answered in SWR's error JSON, nothing registered.
    # Web servers that are no registry: /v2/ a 404, and /v2/ an HTML page.
    site = s["dist"].root.parent / "site"
    (site / "v2").mkdir(parents=True, exist_ok=True)
    (site / "v2" / "index.html").write_text("<html><body>Welcome</body></html>")
    servers = []
    for directory in (s["dist"].root, site):
        port = free_port()
        servers.append(subprocess.Popen(["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                         "--directory", str(directory)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
    web, page = (f"http://127.0.0.1:{p.args[3]}" for p in servers)
    assert requests.get(f"{page}/v2/").status_code == 200
    for name, kind, url, user, pw, word in [
        ("bad-creds", "berth", s["dst"].anon_url, "dr", "wrong", "bad credentials"),
        ("down", "distribution", f"http://127.0.0.1:{free_port()}", "", "", "unreachable"),
        ("no-reg", "distribution", web, "", "", "not a registry"),
        ("web-page", "distribution", page, "", "", "text/html"),
        ("bad url", "distribution", s["dist"].url, "", "", "name"),
        ("badtype", "quay", s["dist"].url, "", "", "type"),
        ("nohost", "distribution", "127.0.0.1:5000", "", "", "url"),
        ("dr-dist", "distribution", s["dist"].url, "", "", "exists"),
    ]:
        if name == "dr-dist":
            time.sleep(1.1)  # the same signed change within 1 s is a replay
        with pytest.raises(ClientRequestException) as e:
            register(s, name, kind, url, user, pw)
        assert e.value.status_code in (400, 409), (name, e.value)
        assert e.value.error_code.startswith("SVCSTG.SWR."), name
        assert word in e.value.error_msg, (name, e.value.error_msg)
    # The secret is in the store sealed, never in clear.
    for server in servers:
        server.kill()
    # Berth itself, anonymously: its token service gives anonymous tokens.
    anon = register(s, "anonymous-berth", "berth", s["dst"].anon_url)
    s["client"].delete_instance_registry(DeleteInstanceRegistryRequest(instance_id=s["project"],
                                                                       registry_id=anon.id))
    stored = s["src"].stored_bytes()
    assert stored and b"dr-pw" not in stored


def test_registry_checks_are_limited_per_tenant(sites):
    """A remote that accepts connections and never answers holds each
    check: a tenant gets 4 at once, the rest a 429 at once, and the slots
    come back when the checks end."""
    import socket
    s = sites
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    held = []

    def hold():
        silent.settimeout(10)
        try:
            while True:
                held.append(silent.accept()[0])
        except OSError:
            pass
    threading.Thread(target=hold, daemon=True).start()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    answers = [None] * 6

    def create(i):
        body = {"name": f"silent-{i}", "type": "distribution", "url": url, "insecure": False,
                "credential": {"type": "basic", "access_key": "", "access_secret": ""}}
        answers[i] = signed_call(s["src"], s["key"], s["project"], "POST",
                                 f"/v2/{s['project']}/instances/{s['project']}/registries", body)
    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    # Two refused at once, while four checks wait on the silent server.
    deadline = time.time() + 60
    while len(held) < 4 or sum(a is not None and a.status_code == 429 for a in answers) < 2:
        assert time.time() < deadline, (len(held), [a and a.status_code for a in answers])
        time.sleep(0.1)
    for c in held:
        c.close()  # the checks end: unreachable
    silent.close()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [400, 400, 400, 400, 429, 429], [(a.status_code, a.text) for a in answers]
    for a in answers:
        assert a.json()["errorCode"] in ("SVCSTG.SWR.4000001", "SVCSTG.SWR.4290001"), a.text
    # Every slot was given back.
    anon = register(s, "after-checks", "distribution", s["dist"].url)
    s["client"].delete_instance_registry(DeleteInstanceRegistryRequest(instance_id=s["project"],
                                                                       registry_id=anon.id))


def test_auto_sync_backfills_and_follows_pushes_to_berth(sites, tmp_path):
    s = sites
    src, dst = s["src"], s["dst"]
    p = skopeo_push(src.host, "acme:acme-pw", "team/app:v1", tmp_path / "a", content=b"v1 layer")
    assert p.returncode == 0, p.stderr
    r = s["client"].create_image_sync_repo(CreateImageSyncRepoRequest(
        namespace="team", repository="app", body=CreateImageSyncRepoRequestBody(
            remote_region_id="dr-berth", remote_namespace="mirror", sync_auto=True)))
    assert r.status_code == 201
    jobs = wait_jobs(s, lambda js: any(j.tag == "v1" and j.status == "success" for j in js))
    v1 = raw_manifest(src.host, "team/app:v1", "acme:acme-pw", tmp_path)
    assert digest_of(raw_manifest(dst.host, "mirror/app:v1", "dr:dr-pw", tmp_path)) == digest_of(v1)
    # A push afterwards is copied by itself.
    p = skopeo_push(src.host, "acme:acme-pw", "team/app:v2", tmp_path / "b", content=b"v2 layer")
    assert p.returncode == 0, p.stderr
    wait_jobs(s, lambda js: any(j.tag == "v2" and j.status == "success" for j in js))
    v2 = raw_manifest(src.host, "team/app:v2", "acme:acme-pw", tmp_path)
    assert digest_of(raw_manifest(dst.host, "mirror/app:v2", "dr:dr-pw", tmp_path)) == digest_of(v2)
    pull_all(dst.host, "mirror/app:v2", tmp_path / "pulled", "dr:dr-pw")
    rules = s["client"].list_image_auto_sync_repos_details(ListImageAutoSyncReposDetailsRequest(
        namespace="team", repository="app")).body
    assert [(x.remote_region_id, x.remote_namespace, x.sync_auto) for x in rules] == [("dr-berth", "mirror", True)]
    assert jobs[0].remote_region_id == "dr-berth" and jobs[0].sync_operator_name


def test_manual_sync_to_distribution(sites, tmp_path):
    s = sites
    r = s["client"].create_manual_image_sync_repo(CreateManualImageSyncRepoRequest(
        namespace="team", repository="app", body=CreateManualImageSyncRepoRequestBody(
            image_tag=["v1", "v2"], remote_region_id="dr-dist", remote_namespace="mirror")))
    assert sorted(r.body) == ["v1", "v2"]
    wait_jobs(s, lambda js: sum(j.remote_region_id == "dr-dist" and j.status == "success" for j in js) == 2)
    for tag in ("v1", "v2"):
        want = digest_of(raw_manifest(s["src"].host, f"team/app:{tag}", "acme:acme-pw", tmp_path))
        assert digest_of(raw_manifest(s["dist"].host, f"mirror/app:{tag}")) == want
    pull_all(s["dist"].host, "mirror/app:v1", tmp_path / "pulled")


def referrer(url, repo, subject_digest, subject_size, subject_type, payload, artifact_type, ref=None):
    """Pushes an artifact manifest whose subject is the given manifest; its digest."""
    empty = push_blob(url, repo, b"{}")
    layer = push_blob(url, repo, payload)
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactType": artifact_type,
         "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
         "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": len(payload)}],
         "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_size}}
    body = json.dumps(m).encode()
    r, digest, _ = put_manifest(url, repo, ref or sha256(body), m)
    assert r.status_code == 201, r.text
    return digest


def test_multi_arch_index_arrives_with_children_and_referrers(sites, tmp_path):
    s = sites
    src = s["src"]
    layout = tmp_path / "multi"
    write_oci_layout(layout, {"m1": [layer_tar_gz({"bin": b"multi-arch binary"})]},
                     index_platforms=["amd64", "arm64"])
    env = dict(os.environ, HOME=str(tmp_path))
    r = subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", "--dest-creds", "acme:acme-pw",
                        f"oci:{layout}:m1", f"docker://{src.host}/team/multi:m1"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    index_raw = raw_manifest(src.host, "team/multi:m1", "acme:acme-pw", tmp_path)
    index = json.loads(index_raw)
    d = digest_of(index_raw)
    url = f"http://acme:acme-pw@{src.host}"
    # A signature of the index by the referrers API, an SBOM of one child,
    # and a cosign-style signature tag.
    sig = referrer(url, "team/multi", d, len(index_raw), index["mediaType"], b"signature",
                   "application/vnd.dev.cosign.artifact.sig.v1+json")
    child = index["manifests"][1]
    sbom = referrer(url, "team/multi", child["digest"], child["size"], child["mediaType"], b"sbom",
                    "application/spdx+json")
    cosign_tag = "sha256-" + d.split(":")[1] + ".sig"
    tagged = referrer(url, "team/multi", d, len(index_raw), index["mediaType"], b"cosign payload",
                      "application/vnd.dev.cosign.simplesigning.v1+json", ref=cosign_tag)
    for region in ("dr-berth", "dr-dist"):
        s["client"].create_manual_image_sync_repo(CreateManualImageSyncRepoRequest(
            namespace="team", repository="multi", body=CreateManualImageSyncRepoRequestBody(
                image_tag=["m1"], remote_region_id=region, remote_namespace="mirror")))
        time.sleep(1.1)  # two signed calls alike within 1 s would be a replay
    jobs = wait_jobs(s, lambda js: sum(j.status == "success" for j in js) == 2, repo="multi")
    assert all(j.status == "success" for j in jobs), [(j.remote_region_id, j.status) for j in jobs]
    dst, dist = s["dst"], s["dist"]
    for host, creds, auth in ((dst.host, "dr:dr-pw", ("dr", "dr-pw")), (dist.host, None, None)):
        assert digest_of(raw_manifest(host, "mirror/multi:m1", creds, tmp_path)) == d
        for m in index["manifests"]:
            got = raw_manifest(host, f"mirror/multi@{m['digest']}", creds, tmp_path)
            assert digest_of(got) == m["digest"]
        for ref in (sig, sbom, tagged):
            assert digest_of(raw_manifest(host, f"mirror/multi@{ref}", creds, tmp_path)) == ref
        assert digest_of(raw_manifest(host, f"mirror/multi:{cosign_tag}", creds, tmp_path)) == tagged
        pull_all(host, "mirror/multi:m1", tmp_path / f"pulled-{host}", creds)
    # Distribution 2.8 has no referrers API: the referrers tag schema's
    # index (sha256-<hex> of the subject) lists them there.
    fallback = json.loads(raw_manifest(dist.host, "mirror/multi:sha256-" + d.split(":")[1]))
    assert {m["digest"] for m in fallback["manifests"]} == {sig, tagged}
    fallback = json.loads(raw_manifest(dist.host, "mirror/multi:sha256-" + child["digest"].split(":")[1]))
    assert [m["digest"] for m in fallback["manifests"]] == [sbom]
    assert fallback["manifests"][0]["artifactType"] == "application/spdx+json"
    # Berth's referrers API at the destination lists them.
    listed = requests.get(f"http://{dst.host}/v2/mirror/multi/referrers/{d}", auth=("dr", "dr-pw")).json()
    assert {m["digest"] for m in listed["manifests"]} == {sig, tagged}
    listed = requests.get(f"http://{dst.host}/v2/mirror/multi/referrers/{child['digest']}",
                          auth=("dr", "dr-pw")).json()
    assert [m["digest"] for m in listed["manifests"]] == [sbom]


GIB = 1 << 30
CHUNK = 64 << 20


def big_image(url, repo, tag, size=GIB, seed=b"big"):
    """Pushes an image with one `size`-byte layer (streamed, never in memory
    whole); returns (manifest digest, layer digest)."""
    block = hashlib.sha256(seed).digest() * (1 << 15)  # 1 MiB

    def chunks():
        for i in range(size // len(block)):
            yield i.to_bytes(8, "big") + block[8:]

    h = hashlib.sha256()
    for c in chunks():
        h.update(c)
    layer = "sha256:" + h.hexdigest()
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = requests.compat.urljoin(f"{url}/", r.headers["Location"])
    r = requests.put(location, params={"digest": layer}, data=chunks())
    assert r.status_code == 201, r.text
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": push_blob(url, repo, config), "size": len(config)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}]}
    r, digest, _ = put_manifest(url, repo, tag, m)
    assert r.status_code == 201, r.text
    return digest, layer


def kill_when(watched, host_to_kill, threshold, timeout=120):
    """kill -9s `host_to_kill` once more than `threshold` bytes arrived in
    the uploads of `watched` (a registry's storage); the bytes there then."""
    deadline = time.time() + timeout
    while watched.upload_bytes() <= threshold:
        assert time.time() < deadline, "the copy never got that far"
        time.sleep(0.005)
    host_to_kill.kill()
    return watched.upload_bytes()


def raw_jobs(s, repo):
    r = s["client"].show_sync_job(ShowSyncJobRequest(namespace="team", repository=repo,
                                                     filter="limit::100|offset::0"))
    return json.loads(r.raw_content)


def copy_killed_half_way(s, tmp_path, region, watched, victim, restart, repo, seed):
    """Syncs a 1 GiB layer to `region`, kill -9s `victim` half-way, restarts
    it, and checks the copy finished from where it stopped."""
    src = s["src"]
    url = f"http://acme:acme-pw@{src.host}"
    digest, layer = big_image(url, f"team/{repo}", "v1", seed=seed)
    s["client"].create_manual_image_sync_repo(CreateManualImageSyncRepoRequest(
        namespace="team", repository=repo, body=CreateManualImageSyncRepoRequestBody(
            image_tag=["v1"], remote_region_id=region, remote_namespace="mirror")))
    at_kill = kill_when(watched, victim, GIB // 3)
    assert at_kill < GIB
    restart()
    wait_jobs(s, lambda js: js and js[0].status == "success", repo=repo, timeout=300)
    job = raw_jobs(s, repo)[0]
    # It went on from the destination's offset: not from zero, and no
    # byte was sent twice beyond the chunk in flight at the kill.
    assert job["resumedFrom"] >= CHUNK, job
    assert job["bytes"] <= GIB + CHUNK, job
    assert job["attempts"] >= 2 or victim is src, job
    return digest, layer


def test_a_1gib_layer_copy_resumes_after_the_source_host_is_killed(sites, tmp_path):
    s = sites
    src, dst = s["src"], s["dst"]
    digest, layer = copy_killed_half_way(s, tmp_path, "dr-berth", dst.storage, src, src.start,
                                         repo="big-source", seed=b"source kill")
    assert digest_of(raw_manifest(dst.host, "mirror/big-source:v1", "dr:dr-pw", tmp_path)) == digest
    r = requests.head(f"http://{dst.host}/v2/mirror/big-source/blobs/{layer}", auth=("dr", "dr-pw"))
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == GIB


def test_a_1gib_layer_copy_resumes_after_the_target_is_killed(sites, tmp_path):
    # Berth keeps what a broken chunk brought and reports it; CNCF
    # Distribution cancels a session whose data outgrew its signed state
    # (after any broken chunk), so a copy to it restarts that blob.
    s = sites
    dst = s["dst"]
    digest, layer = copy_killed_half_way(s, tmp_path, "dr-berth", dst.storage, dst, dst.start,
                                         repo="big-target", seed=b"target kill")
    assert digest_of(raw_manifest(dst.host, "mirror/big-target:v1", "dr:dr-pw", tmp_path)) == digest
    r = requests.head(f"http://{dst.host}/v2/mirror/big-target/blobs/{layer}", auth=("dr", "dr-pw"))
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == GIB


def policy_body(name, *, src=None, dest=None, ns=None, repos=None, tags=None, trigger="manual", cron=None,
                override=False, enabled=True):
    from huaweicloudsdkswr.v2 import (CreateReplicationPolicyRequestBody, Filter, ReplicationRegistry,
                                      TriggerConfig, TriggerSetting)
    filters = [Filter(type="name", value=repos)] if repos else []
    filters += [Filter(type="tag", value=tags)] if tags else []
    return CreateReplicationPolicyRequestBody(
        name=name, src_registry=ReplicationRegistry(id=src) if src else None,
        dest_registry=ReplicationRegistry(id=dest) if dest else None, dest_namespace=ns, filters=filters,
        repo_scope_mode="regular", enabled=enabled, override=override,
        trigger=TriggerConfig(type=trigger, trigger_settings=TriggerSetting(cron=cron) if cron else None))


def create_policy(s, body):
    from huaweicloudsdkswr.v2 import CreateInstanceReplicationPolicyRequest
    return s["client"].create_instance_replication_policy(CreateInstanceReplicationPolicyRequest(
        instance_id=s["project"], body=body)).id


def registry_id(s, name):
    return s["ids"][name]


def executions(s, policy):
    from huaweicloudsdkswr.v2 import ListInstanceReplicationPolicyExecutionsRequest
    return s["client"].list_instance_replication_policy_executions(
        ListInstanceReplicationPolicyExecutionsRequest(instance_id=s["project"], policy_id=policy)).executions or []


def wait_execution(s, policy, done, timeout=60):
    deadline = time.time() + timeout
    while True:
        ex = executions(s, policy)
        if ex and done(ex[0]):
            return ex[0]
        assert time.time() < deadline, [(e.id, e.status, e.status_text) for e in ex]
        time.sleep(0.3)


def test_pull_replication_from_distribution(sites, tmp_path):
    from huaweicloudsdkswr.v2 import (CreateReplicationExecutionRequestBody, ExecuteInstanceReplicationPolicyRequest,
                                      ListInstanceReplicationPolicyExecSubTasksRequest,
                                      ListInstanceReplicationPolicyExecTasksRequest)
    s = sites
    dist, src = s["dist"], s["src"]
    for ref, content in (("upstream/tool:1.0", b"tool 1.0"), ("upstream/tool:1.1", b"tool 1.1"),
                         ("upstream/tool:2.0", b"tool 2.0"), ("upstream/other:1.0", b"other")):
        layout = tmp_path / ref.replace("/", "_").replace(":", "_")
        write_oci_layout(layout, {"t": [layer_tar_gz({"f": content})]})
        r = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-no-creds", f"oci:{layout}:t",
                            f"docker://{dist.host}/{ref}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    policy = create_policy(s, policy_body("pull-tools", src=registry_id(s, "dr-dist"), ns="team",
                                          repos="upstream/tool", tags="1.*"))
    r = s["client"].execute_instance_replication_policy(ExecuteInstanceReplicationPolicyRequest(
        instance_id=s["project"], body=CreateReplicationExecutionRequestBody(policy_id=policy)))
    ex = wait_execution(s, policy, lambda e: e.status != "InProgress")
    assert (ex.id, ex.status, ex.total, ex.succeed, ex.trigger) == (r.id, "Succeed", 2, 2, "manual"), ex
    for tag in ("1.0", "1.1"):
        want = digest_of(raw_manifest(dist.host, f"upstream/tool:{tag}"))
        assert digest_of(raw_manifest(src.host, f"team/tool:{tag}", "acme:acme-pw", tmp_path)) == want
    pull_all(src.host, "team/tool:1.1", tmp_path / "pulled", "acme:acme-pw")
    assert requests.get(f"http://{src.host}/v2/team/tool/manifests/2.0", auth=("acme", "acme-pw"),
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 404
    assert requests.get(f"http://{src.host}/v2/team/other/tags/list", auth=("acme", "acme-pw")).status_code == 404
    tasks = s["client"].list_instance_replication_policy_exec_tasks(ListInstanceReplicationPolicyExecTasksRequest(
        instance_id=s["project"], execution_id=ex.id)).tasks
    assert [(t.status, t.dst_resource) for t in tasks] == [("Succeed", "team/tool")]
    subs = s["client"].list_instance_replication_policy_exec_sub_tasks(
        ListInstanceReplicationPolicyExecSubTasksRequest(instance_id=s["project"], execution_id=ex.id,
                                                         task_id=tasks[0].id, status="Succeed")).sub_tasks
    assert sorted(x.tag for x in subs) == ["1.0", "1.1"] and all(x.digest.startswith("sha256:") for x in subs)


def test_event_based_push_policy(sites, tmp_path):
    s = sites
    policy = create_policy(s, policy_body("push-evt", dest=registry_id(s, "dr-berth"), ns="mirror",
                                          repos="team/evt*", trigger="event_based"))
    p = skopeo_push(s["src"].host, "acme:acme-pw", "team/evt:v1", tmp_path, content=b"event based")
    assert p.returncode == 0, p.stderr
    ex = wait_execution(s, policy, lambda e: e.status != "InProgress")
    assert (ex.status, ex.total, ex.trigger) == ("Succeed", 1, "event_based"), ex
    want = digest_of(raw_manifest(s["src"].host, "team/evt:v1", "acme:acme-pw", tmp_path))
    assert digest_of(raw_manifest(s["dst"].host, "mirror/evt:v1", "dr:dr-pw", tmp_path)) == want


def test_replication_policies_refuse_bad_input(sites):
    from huaweicloudsdkswr.v2 import (CreateReplicationExecutionRequestBody, ExecuteInstanceReplicationPolicyRequest,
                                      ListInstanceReplicationPolicyExecSubTasksRequest)
    s = sites
    dist = registry_id(s, "dr-dist")
    for body, word in [
        (policy_body("no-such-registry", dest=99999), "unknown registry"),
        (policy_body("both", src=dist, dest=dist), "one of them"),
        (policy_body("neither"), "required"),
        (policy_body("bad-filter", dest=dist, repos="team/[x"), "filter"),
        (policy_body("bad-cron", dest=dist, trigger="scheduled", cron="* * *"), "cron"),
        (policy_body("pull-events", src=dist, trigger="event_based"), "pushes only"),
        (policy_body("bad name!", dest=dist), "name"),
        (policy_body("bad-ns", dest=dist, ns="Not An Org"), "dest_namespace"),
        (policy_body("pull-elsewhere", src=dist, ns="not-ours"), "not an organization of the tenant"),
        (policy_body("every-second", dest=dist, trigger="scheduled", cron="* * * * * *"), "once a minute"),
        # Oversized input is named, not echoed back whole.
        (policy_body("x!" * 5000, dest=dist), "name"),
        (policy_body("big-ns", dest=dist, ns="N" * 10000), "dest_namespace"),
    ]:
        with pytest.raises(ClientRequestException) as e:
            create_policy(s, body)
        assert e.value.status_code == 400 and e.value.error_code.startswith("SVCSTG.SWR."), body.name[:20]
        assert word in e.value.error_msg, (body.name[:20], e.value.error_msg)
        assert len(e.value.error_msg) < 300, e.value.error_msg[:300]
    with pytest.raises(ClientRequestException) as e:
        s["client"].execute_instance_replication_policy(ExecuteInstanceReplicationPolicyRequest(
            instance_id=s["project"], body=CreateReplicationExecutionRequestBody(policy_id=424242)))
    assert e.value.status_code == 404
    with pytest.raises(ClientRequestException) as e:
        s["client"].list_instance_replication_policy_exec_sub_tasks(ListInstanceReplicationPolicyExecSubTasksRequest(
            instance_id=s["project"], execution_id=1, task_id=1, status="Done"))
    assert e.value.status_code == 400


def test_stop_ends_waiting_items(sites, tmp_path):
    from huaweicloudsdkswr.v2 import (CreateReplicationExecutionRequestBody, ExecuteInstanceReplicationPolicyRequest,
                                      StopInstanceReplicationPolicyExecutionRequest)
    s = sites
    dist = s["dist"]
    for tag in ("s1", "s2", "s3"):
        p = skopeo_push(s["src"].host, "acme:acme-pw", f"team/stoppable:{tag}", tmp_path / tag, content=tag.encode())
        assert p.returncode == 0, p.stderr
    policy = create_policy(s, policy_body("stoppable", dest=registry_id(s, "dr-dist"), repos="team/stoppable"))
    dist.kill()  # the target is down: items wait for their retries
    try:
        r = s["client"].execute_instance_replication_policy(ExecuteInstanceReplicationPolicyRequest(
            instance_id=s["project"], body=CreateReplicationExecutionRequestBody(policy_id=policy)))
        time.sleep(1)  # the first attempts fail: connection refused
        s["client"].stop_instance_replication_policy_execution(StopInstanceReplicationPolicyExecutionRequest(
            instance_id=s["project"], execution_id=r.id))
        ex = wait_execution(s, policy, lambda e: e.status != "InProgress", timeout=60)
        assert (ex.status, ex.stopped, ex.succeed) == ("Stopped", 3, 0), ex
        # The failed check marked the registry.
        shown = s["client"].show_instance_registry(ShowInstanceRegistryRequest(
            instance_id=s["project"], registry_id=registry_id(s, "dr-dist")))
        assert shown.status == "unhealthy" and "refused" in shown.to_json_object()["status_text"]
        with pytest.raises(ClientRequestException) as e:
            s["client"].stop_instance_replication_policy_execution(StopInstanceReplicationPolicyExecutionRequest(
                instance_id=s["project"], execution_id=r.id))
        assert e.value.status_code == 409
    finally:
        dist.start()


def test_failed_items_are_retried_alone_and_executions_announce_their_end(sites, tmp_path):
    from huaweicloudsdkswr.v2 import CreateReplicationExecutionRequestBody, ExecuteInstanceReplicationPolicyRequest
    s = sites
    src, dst = s["src"], s["dst"]
    for tag in ("r1", "r2"):
        p = skopeo_push(src.host, "acme:acme-pw", f"team/retry:{tag}", tmp_path / tag, content=tag.encode())
        assert p.returncode == 0, p.stderr
    policy = create_policy(s, policy_body("retry-me", dest=registry_id(s, "dr-berth"), ns="mirror",
                                          repos="team/retry"))
    # The target refuses the registered credentials: a permanent failure.
    dst.iam("user-set", "dr", "dr", "--password", "changed-pw")
    try:
        s["client"].execute_instance_replication_policy(ExecuteInstanceReplicationPolicyRequest(
            instance_id=s["project"], body=CreateReplicationExecutionRequestBody(policy_id=policy)))
        failed = wait_execution(s, policy, lambda e: e.status != "InProgress")
    finally:
        dst.iam("user-set", "dr", "dr", "--password", "dr-pw")
    assert (failed.status, failed.failed, failed.total) == ("Failed", 2, 2), failed
    path = f"/v2/{s['project']}/instances/{s['project']}/replication/executions"
    r = signed_call(src, s["key"], s["project"], "POST", path, {"policy_id": policy, "retry_failed_of": failed.id})
    assert r.status_code == 201, r.text
    retried = wait_execution(s, policy, lambda e: e.id == r.json()["id"] and e.status != "InProgress")
    assert (retried.status, retried.total, retried.trigger) == ("Succeed", 2, "retry"), retried
    for tag in ("r1", "r2"):
        want = digest_of(raw_manifest(src.host, f"team/retry:{tag}", "acme:acme-pw", tmp_path))
        assert digest_of(raw_manifest(dst.host, f"mirror/retry:{tag}", "dr:dr-pw", tmp_path)) == want
    time.sleep(1.1)
    r = signed_call(src, s["key"], s["project"], "POST", path, {"policy_id": policy, "retry_failed_of": retried.id})
    assert r.status_code == 409 and "nothing failed" in r.json()["errorMsg"], r.text
    # Each execution's end is an event (webhook type REPLICATION).
    ended = {e["detail"]["execution_id"]: e for e in all_events(src, "replication.completed")}
    assert ended[failed.id]["detail"]["status"] == "Failed" and ended[failed.id]["detail"]["failed"] == 2
    assert ended[retried.id]["detail"]["status"] == "Succeed"
    assert ended[retried.id]["repository"] == "team/retry"


def test_rules_and_registries_in_use_and_their_deletion(sites, tmp_path):
    s = sites
    c = s["client"]
    p = skopeo_push(s["src"].host, "acme:acme-pw", "team/ruled:v1", tmp_path, content=b"ruled")
    assert p.returncode == 0, p.stderr
    c.create_image_sync_repo(CreateImageSyncRepoRequest(
        namespace="team", repository="ruled", body=CreateImageSyncRepoRequestBody(
            remote_region_id="dr-berth", remote_namespace="mirror")))
    with pytest.raises(ClientRequestException) as e:
        c.delete_instance_registry(DeleteInstanceRegistryRequest(instance_id=s["project"],
                                                                 registry_id=registry_id(s, "dr-berth")))
    assert e.value.status_code == 409 and "sync rule" in e.value.error_msg
    c.delete_image_sync_repo(DeleteImageSyncRepoRequest(namespace="team", repository="ruled",
                                                        body=DeleteImageSyncRepoRequestBody(
                                                            remote_region_id="dr-berth", remote_namespace="mirror")))
    assert not c.list_image_auto_sync_repos_details(ListImageAutoSyncReposDetailsRequest(
        namespace="team", repository="ruled")).body
    time.sleep(1.1)
    with pytest.raises(ClientRequestException) as e:
        c.delete_image_sync_repo(DeleteImageSyncRepoRequest(namespace="team", repository="ruled",
                                                            body=DeleteImageSyncRepoRequestBody(
                                                                remote_region_id="dr-berth", remote_namespace="mirror")))
    assert e.value.status_code == 404
    for body, word in [
        (CreateImageSyncRepoRequestBody(remote_region_id="nowhere", remote_namespace="mirror"), "unknown region"),
        (CreateImageSyncRepoRequestBody(remote_region_id="dr-berth", remote_namespace="Bad NS"), "remoteNamespace"),
    ]:
        with pytest.raises(ClientRequestException) as e:
            c.create_image_sync_repo(CreateImageSyncRepoRequest(namespace="team", repository="ruled", body=body))
        assert e.value.status_code == 400 and word in e.value.error_msg, e.value.error_msg
    with pytest.raises(ClientRequestException) as e:
        c.create_manual_image_sync_repo(CreateManualImageSyncRepoRequest(
            namespace="team", repository="ruled", body=CreateManualImageSyncRepoRequestBody(
                image_tag=["no-such-tag"], remote_region_id="dr-berth", remote_namespace="mirror")))
    assert e.value.status_code == 404 and "no-such-tag" in e.value.error_msg
    with pytest.raises(ClientRequestException) as e:
        s["client"].show_sync_job(ShowSyncJobRequest(namespace="team", repository="ruled", filter="limit::x"))
    assert e.value.status_code == 400
    tmp = register(s, "short-lived", "distribution", s["dist"].url).id
    c.delete_instance_registry(DeleteInstanceRegistryRequest(instance_id=s["project"], registry_id=tmp))
    with pytest.raises(ClientRequestException) as e:
        c.show_instance_registry(ShowInstanceRegistryRequest(instance_id=s["project"], registry_id=tmp))
    assert e.value.status_code == 404


def test_registry_and_policy_lifecycle_through_the_sdk(sites):
    from huaweicloudsdkswr.v2 import (DeleteInstanceReplicationPolicyRequest, ListInstanceReplicationPoliciesRequest,
                                      ShowInstanceReplicationPolicyRequest, UpdateInstanceRegistryRequest,
                                      UpdateInstanceReplicationPolicyRequest, UpdateRegistryRequestBody,
                                      UpdateReplicationPolicyRequestBody, Filter, ReplicationRegistry,
                                      TriggerConfig, TriggerSetting)
    s = sites
    c, p = s["client"], s["project"]
    rid = register(s, "lifecycle", "distribution", s["dist"].url).id

    def update(**kw):
        body = dict(name="lifecycle-2", type="distribution", url=s["dist"].url, description="the DR site",
                    credential=Credential(type="basic", access_key="", access_secret=""), insecure=False)
        body.update(kw)
        return c.update_instance_registry(UpdateInstanceRegistryRequest(
            instance_id=p, registry_id=rid, body=UpdateRegistryRequestBody(**body)))

    update()
    shown = c.show_instance_registry(ShowInstanceRegistryRequest(instance_id=p, registry_id=rid))
    assert (shown.name, shown.description) == ("lifecycle-2", "the DR site")
    with pytest.raises(ClientRequestException) as e:
        update(url=f"http://127.0.0.1:{free_port()}", description="moved")
    assert e.value.status_code == 400 and "unreachable" in e.value.error_msg
    shown = c.show_instance_registry(ShowInstanceRegistryRequest(instance_id=p, registry_id=rid))
    assert (shown.url, shown.description) == (s["dist"].url, "the DR site")
    listed = c.list_instance_registries(ListInstanceRegistriesRequest(instance_id=p, name="lifecycle"))
    assert [r.id for r in listed.registries] == [rid] and listed.total == 1

    pid = create_policy(s, policy_body("lifecycle-policy", dest=rid, repos="team/**", enabled=False))
    got = c.show_instance_replication_policy(ShowInstanceReplicationPolicyRequest(instance_id=p, policy_id=pid))
    assert (got.name, got.dest_registry.id, got.enabled, got.trigger.type) == ("lifecycle-policy", rid, False, "manual")
    c.update_instance_replication_policy(UpdateInstanceReplicationPolicyRequest(
        instance_id=p, policy_id=pid, body=UpdateReplicationPolicyRequestBody(
            name="lifecycle-policy", dest_registry=ReplicationRegistry(id=rid), dest_namespace="mirror",
            filters=[Filter(type="name", value="team/nothing-*")], repo_scope_mode="regular",
            trigger=TriggerConfig(type="scheduled", trigger_settings=TriggerSetting(cron="0 0 0 1 1 *")),
            override=True, enabled=True)))
    got = c.show_instance_replication_policy(ShowInstanceReplicationPolicyRequest(instance_id=p, policy_id=pid))
    assert (got.enabled, got.trigger.type, got.trigger.trigger_settings.cron, got.override, got.dest_namespace) == \
        (True, "scheduled", "0 0 0 1 1 *", True, "mirror")
    listed = c.list_instance_replication_policies(ListInstanceReplicationPoliciesRequest(
        instance_id=p, name="lifecycle", registry_id=rid))
    assert [x.id for x in listed.policies] == [pid]
    with pytest.raises(ClientRequestException) as e:
        c.delete_instance_registry(DeleteInstanceRegistryRequest(instance_id=p, registry_id=rid))
    assert e.value.status_code == 409 and "policy" in e.value.error_msg
    c.delete_instance_replication_policy(DeleteInstanceReplicationPolicyRequest(instance_id=p, policy_id=pid))
    with pytest.raises(ClientRequestException) as e:
        c.show_instance_replication_policy(ShowInstanceReplicationPolicyRequest(instance_id=p, policy_id=pid))
    assert e.value.status_code == 404
    time.sleep(1.1)  # the same signed delete as the refused one, within 1 s, is a replay
    c.delete_instance_registry(DeleteInstanceRegistryRequest(instance_id=p, registry_id=rid))


def test_each_tenant_keeps_its_newest_200_finished_executions(tmp_path):
    src = Registry(tmp_path / "src", extra_args=["--outbound-allow", "127.0.0.1"]).start()
    dist = Distribution(tmp_path / "dist").start()
    try:
        client, project = tenant_client(src, "acme", "acme-pw", ["team"])
        s = {"client": client, "project": project}
        register(s, "dr", "distribution", dist.url)
        p = skopeo_push(src.host, "acme:acme-pw", "team/app:v1", tmp_path, content=b"pruned")
        assert p.returncode == 0, p.stderr
        # 210 finished syncs of team/app (ids 1..210), each with its item
        # and sync-job index entry, seeded in the stopped registry.
        src.stop()
        db = src.db()
        version = db.execute("SELECT max(version) FROM kv").fetchone()[0]
        for i in range(1, 211):
            execution = {"id": i, "tenant": "acme", "policy_id": 0, "trigger": "manual", "registry_id": 1,
                         "total": 1, "succeed": 1, "failed": 0, "stopped": 0, "created": 1000 + i,
                         "updated": 1000 + i, "operator": "acme"}
            item = {"id": i, "execution_id": i, "task_id": i, "tenant": "acme", "direction": "push",
                    "registry_id": 1, "region": "dr", "source": "team/app", "destination": "mirror/app",
                    "tag": "v1", "override": False, "status": "success", "created": 1000 + i, "operator": "acme"}
            item_key = f"replication-item/acme/{i:020d}/{i:020d}"
            for key, value in ((f"replication-exec/acme/{i:020d}", json.dumps(execution).encode()),
                               (item_key, json.dumps(item).encode()),
                               (f"sync-job/acme/team/app:{2**64 - 1 - i:020d}", item_key.encode())):
                version += 1
                db.execute("INSERT INTO kv (key, value, version) VALUES (?, ?, ?)", (key, value, version))
        for counter in ("count/replication-execution-id", "count/replication-item-id", "count/replication-task-id"):
            db.execute("INSERT OR REPLACE INTO counters (key, value) VALUES (?, 210)", (counter,))
        db.commit()
        db.close()
        src.start()
        client.create_manual_image_sync_repo(CreateManualImageSyncRepoRequest(
            namespace="team", repository="app", body=CreateManualImageSyncRepoRequestBody(
                image_tag=["v1"], remote_region_id="dr", remote_namespace="mirror")))
        wait_jobs(s, lambda js: js and js[0].id == 211 and js[0].status == "success")
        deadline = time.time() + 30
        while True:
            db = src.db()
            count = lambda prefix: db.execute("SELECT count(*) FROM kv WHERE key LIKE ?",
                                              (prefix + "%",)).fetchone()[0]
            ids = sorted(json.loads(v)["id"] for (v,) in
                         db.execute("SELECT value FROM kv WHERE key LIKE 'replication-exec/acme/%'"))
            items, index = count("replication-item/acme/"), count("sync-job/acme/team/app:")
            db.close()
            if len(ids) == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        # The newest 200 stay (the new one among them), with their items
        # and index entries; the 11 oldest go.
        assert ids == list(range(12, 212)) and items == 200 and index == 200, (ids[:3], items, index)
        assert len(sync_jobs(s, limit=1000)) == 200
    finally:
        src.stop()
        dist.stop()


def test_tags_are_copied_several_at_once_and_counted_exactly(sites, tmp_path):
    """Eight tags through a remote that takes half a second per manifest
    request: the job copies several at once (at most 3 of one tenant),
    both ways, and the execution's figures count every tag once."""
    from huaweicloudsdkswr.v2 import (CreateNamespaceRequest, CreateNamespaceRequestBody,
                                      CreateReplicationExecutionRequestBody, ExecuteInstanceReplicationPolicyRequest,
                                      ListInstanceReplicationPolicyExecSubTasksRequest,
                                      ListInstanceReplicationPolicyExecTasksRequest)
    s = sites
    slow = SlowProxy(s["dist"].url, delay=0.5)
    slow_id = register(s, "slow-dist", "distribution", slow.url).id
    acme = f"http://acme:acme-pw@{s['src'].host}"
    tags = [f"v{i}" for i in range(8)]
    for t in tags:
        image(acme, "team/many", layers=[f"many {t}".encode()], tag=t)
    policy = create_policy(s, policy_body("push-many", dest=slow_id, ns="fan", repos="team/many"))
    r = s["client"].execute_instance_replication_policy(ExecuteInstanceReplicationPolicyRequest(
        instance_id=s["project"], body=CreateReplicationExecutionRequestBody(policy_id=policy)))
    ex = wait_execution(s, policy, lambda e: e.status != "InProgress", timeout=120)
    assert (ex.id, ex.status, ex.total, ex.succeed, ex.failed) == (r.id, "Succeed", 8, 8, 0), ex
    assert 2 <= slow.most["PUT"] <= 3, slow.most
    for t in tags:
        want = digest_of(raw_manifest(s["src"].host, f"team/many:{t}", "acme:acme-pw", tmp_path))
        assert digest_of(raw_manifest(s["dist"].host, f"fan/many:{t}")) == want

    # And back, through the uploads and manifests components, several at once.
    s["client"].create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="back")))
    slow.most.clear()
    policy = create_policy(s, policy_body("pull-many", src=slow_id, ns="back", repos="fan/many"))
    s["client"].execute_instance_replication_policy(ExecuteInstanceReplicationPolicyRequest(
        instance_id=s["project"], body=CreateReplicationExecutionRequestBody(policy_id=policy)))
    ex = wait_execution(s, policy, lambda e: e.status != "InProgress", timeout=120)
    assert (ex.status, ex.total, ex.succeed) == ("Succeed", 8, 8), ex
    assert slow.most["GET"] >= 2, slow.most
    # Berth held every blob already (in team/many): mounted, none fetched.
    tasks = s["client"].list_instance_replication_policy_exec_tasks(ListInstanceReplicationPolicyExecTasksRequest(
        instance_id=s["project"], execution_id=ex.id)).tasks
    subs = s["client"].list_instance_replication_policy_exec_sub_tasks(
        ListInstanceReplicationPolicyExecSubTasksRequest(instance_id=s["project"], execution_id=ex.id,
                                                         task_id=tasks[0].id, status="Succeed")).sub_tasks
    assert len(subs) == 8 and all(" 0 blob(s) sent" in x.status_text for x in subs), [x.status_text for x in subs]
    mounted = [int(re.search(r"(\d+) mounted", x.status_text).group(1)) for x in subs]
    assert sum(mounted) >= 8, [x.status_text for x in subs]
    for t in tags:
        want = digest_of(raw_manifest(s["src"].host, f"team/many:{t}", "acme:acme-pw", tmp_path))
        assert digest_of(raw_manifest(s["src"].host, f"back/many:{t}", "acme:acme-pw", tmp_path)) == want
    pull_all(s["src"].host, "back/many:v7", tmp_path / "pulled", "acme:acme-pw")


def test_a_pull_never_mounts_another_tenants_blobs(sites, tmp_path):
    """Another tenant of the same Berth holds the layer a pulled manifest
    names: the job fetches it from the remote, it does not mount it (which
    would hand one tenant's private blob to another on a digest's word)."""
    from huaweicloudsdkswr.v2 import (CreateReplicationExecutionRequestBody, ExecuteInstanceReplicationPolicyRequest,
                                      ListInstanceReplicationPolicyExecSubTasksRequest,
                                      ListInstanceReplicationPolicyExecTasksRequest)
    s = sites
    src, dist = s["src"], s["dist"]
    tenant_client(src, "other", "other-pw", ["othr"])
    private = layer_tar_gz({"secret": b"the other tenant's private layer"})
    layout = tmp_path / "secret"
    write_oci_layout(layout, {"t": [private]})
    for dest, creds in ((f"{src.host}/othr/secret:v1", ["--dest-creds", "other:other-pw"]),
                        (f"{dist.host}/upstream/secret:v1", ["--dest-no-creds"])):
        r = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", *creds, f"oci:{layout}:t",
                            f"docker://{dest}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    policy = create_policy(s, policy_body("pull-secret", src=registry_id(s, "dr-dist"), ns="team",
                                          repos="upstream/secret"))
    s["client"].execute_instance_replication_policy(ExecuteInstanceReplicationPolicyRequest(
        instance_id=s["project"], body=CreateReplicationExecutionRequestBody(policy_id=policy)))
    ex = wait_execution(s, policy, lambda e: e.status != "InProgress")
    assert (ex.status, ex.total) == ("Succeed", 1), ex
    tasks = s["client"].list_instance_replication_policy_exec_tasks(ListInstanceReplicationPolicyExecTasksRequest(
        instance_id=s["project"], execution_id=ex.id)).tasks
    [sub] = s["client"].list_instance_replication_policy_exec_sub_tasks(
        ListInstanceReplicationPolicyExecSubTasksRequest(instance_id=s["project"], execution_id=ex.id,
                                                         task_id=tasks[0].id, status="Succeed")).sub_tasks
    # Its config and layer are the other tenant's only: both fetched.
    assert re.search(r" (\d+) blob\(s\) sent, \d+ present, (\d+) mounted", sub.status_text).groups() == ("2", "0"), \
        sub.status_text
    r = requests.get(f"http://{src.host}/v2/team/secret/blobs/{sha256(private)}", auth=("acme", "acme-pw"))
    assert r.status_code == 200 and r.content == private
