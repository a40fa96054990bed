"""Fixtures that start the real Berth host (target/release/berth) on a free
loopback port with an empty data directory, and helpers to build images.

`BERTH_TEST_BACKEND` chooses the stores every test registry uses:
- `embedded` (the default): SQLite and the filesystem in the data
  directory;
- `postgres`: metadata in a database of its own on the PostgreSQL server
  at `BERTH_TEST_POSTGRES_URL`, blobs in the data directory;
- `scale-out`: that database, and blobs and uploads under a prefix of
  their own in the S3 bucket at `BERTH_TEST_S3`
  (`http://<key id>:<secret>@<host>:<port>/<bucket>`, the Garage server
  that `make test` starts), through a runtime config.
- `spin`: the stores of `scale-out`, served by the Spin build
  (`make spin`, infra/spin/spin.toml) on `berth serve`: the components
  reach them through the adapters (PostgreSQL through `spin:postgres`,
  the bucket through outbound HTTP), given as Spin variables.
`make test` runs the whole suite embedded and scale-out, and the
conformance and skopeo tests on the Spin build. Tests that look
at stored metadata go through `Registry.db()`, and at stored blobs and
uploads through `Registry.storage`, which speak to either."""

import gzip
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BERTH = ROOT / "target" / "release" / "berth"
# The bootstrap administrator of every test registry (account "admin").
ADMIN = ("admin", "berth-test-admin")
BACKEND = os.environ.get("BERTH_TEST_BACKEND", "embedded")
assert BACKEND in ("embedded", "postgres", "scale-out", "spin"), \
    f"BERTH_TEST_BACKEND={BACKEND}: embedded, postgres, scale-out or spin"
ON_POSTGRES = BACKEND in ("postgres", "scale-out", "spin")
ON_S3 = BACKEND in ("scale-out", "spin")
ON_SPIN = BACKEND == "spin"
POSTGRES_URL = os.environ.get("BERTH_TEST_POSTGRES_URL", "")
S3_URL = os.environ.get("BERTH_TEST_S3", "")


def s3_settings():
    """(endpoint, key id, secret, bucket) of `BERTH_TEST_S3`."""
    from urllib.parse import urlsplit
    assert S3_URL, "BERTH_TEST_S3: the S3 server of the tests (make test sets it)"
    u = urlsplit(S3_URL)
    return f"{u.scheme}://{u.hostname}:{u.port}", u.username, u.password, u.path.strip("/")


class FsStorage:
    """A registry's blobs and uploads in a directory (`blobs/<alg>/<2 hex>/<hex>`,
    `uploads/<id>`, `tmp/<process>/`)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _blob(self, digest):
        alg, hexd = digest.split(":")
        return self.root / "blobs" / alg / hexd[:2] / hexd

    def digests(self):
        """Every stored sha256 blob, as `sha256:<hex>`."""
        return {"sha256:" + p.name for p in (self.root / "blobs" / "sha256").glob("*/*")}

    def exists(self, digest):
        return self._blob(digest).exists()

    def read(self, digest):
        return self._blob(digest).read_bytes()

    def write(self, digest, data):
        """Replaces what is stored under `digest` (bit rot, a stray file)."""
        self._blob(digest).parent.mkdir(parents=True, exist_ok=True)
        self._blob(digest).write_bytes(data)

    def delete(self, digest):
        self._blob(digest).unlink()

    def size(self, digest):
        return self._blob(digest).stat().st_size

    def upload_ids(self):
        d = self.root / "uploads"
        return {p.name for p in d.iterdir()} if d.exists() else set()

    def delete_upload(self, upload_id):
        (self.root / "uploads" / upload_id).unlink()

    def upload_bytes(self):
        """Bytes held by uploads under way."""
        d = self.root / "uploads"
        return sum(p.stat().st_size for p in d.iterdir() if p.is_file()) if d.exists() else 0

    def leftovers(self):
        """Temporary files (a process's own empty directory aside)."""
        return [p for p in (self.root / "tmp").rglob("*") if not p.is_dir()]


class S3Storage:
    """A registry's blobs and uploads under `prefix` in the tests' bucket
    (`blobs/<alg>/<hex>`, `uploads/<id>/…`, `tmp/<id>`)."""

    def __init__(self, prefix):
        import boto3
        from botocore.config import Config
        endpoint, key, secret, self.bucket = s3_settings()
        self.s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                               aws_secret_access_key=secret, region_name="garage",
                               config=Config(s3={"addressing_style": "path"}))
        self.prefix = prefix

    def objects(self, under):
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + under):
            for o in page.get("Contents", []):
                out[o["Key"][len(self.prefix):]] = o["Size"]
        return out

    def clear(self):
        keys = list(self.objects(""))
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self.prefix + k} for k in keys[i:i + 1000]], "Quiet": True})

    def _key(self, digest):
        alg, hexd = digest.split(":")
        return f"{self.prefix}blobs/{alg}/{hexd}"

    def digests(self):
        return {"sha256:" + k.rsplit("/", 1)[1] for k in self.objects("blobs/sha256/")}

    def exists(self, digest):
        import botocore.exceptions
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._key(digest))
            return True
        except botocore.exceptions.ClientError:
            return False

    def read(self, digest):
        return self.s3.get_object(Bucket=self.bucket, Key=self._key(digest))["Body"].read()

    def write(self, digest, data):
        self.s3.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data)

    def delete(self, digest):
        self.s3.delete_object(Bucket=self.bucket, Key=self._key(digest))

    def size(self, digest):
        return self.s3.head_object(Bucket=self.bucket, Key=self._key(digest))["ContentLength"]

    def upload_ids(self):
        return {k.split("/")[1] for k in self.objects("uploads/")}

    def delete_upload(self, upload_id):
        for k in self.objects(f"uploads/{upload_id}/"):
            self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + k)

    def upload_bytes(self):
        return sum(self.objects("uploads/").values())

    def leftovers(self):
        return list(self.objects("tmp/"))


def s3_prefix(data_dir: Path, fresh: bool) -> str:
    """The bucket prefix of a data directory's test registry: emptied when
    `fresh`, else kept (a registry restarted on the same directory finds
    its blobs)."""
    prefix = "t-" + hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:24] + "/"
    if fresh:
        S3Storage(prefix).clear()
    return prefix


def postgres_database(data_dir: Path, fresh: bool) -> str:
    """The url of the test database of a data directory: made empty when
    `fresh` (a new data directory), else the one made before (a registry
    restarted on the same directory finds its metadata)."""
    import psycopg
    from urllib.parse import urlsplit, urlunsplit
    assert POSTGRES_URL, "BERTH_TEST_POSTGRES_URL: the PostgreSQL server of the tests (make test sets it)"
    name = "berth_t_" + hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:24]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as c:
        if fresh:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            c.execute(f'CREATE DATABASE "{name}"')
    u = urlsplit(POSTGRES_URL)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


class PostgresMetadata:
    """A test registry's metadata on PostgreSQL, read and written with the
    SQL the tests write for SQLite (`kv`, `counters`, `?` placeholders,
    `INSERT OR REPLACE`), rewritten for Berth's tables there."""

    def __init__(self, url):
        import psycopg
        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql, params=()):
        sql = re.sub(r"\bkv\b", "berth_kv", sql)
        sql = re.sub(r"\bcounters\b", "berth_counters", sql)
        sql = sql.replace("instr(CAST(value AS TEXT), ?)", "strpos(encode(value, 'escape'), ?)")
        sql = sql.replace("instr(", "strpos(")
        if re.match(r"\s*INSERT OR REPLACE INTO", sql, re.I):
            sql = re.sub(r"INSERT OR REPLACE INTO", "INSERT INTO", sql, flags=re.I)
            sets = "value = excluded.value"
            if "berth_kv" in sql:
                sets += ", version = excluded.version"
            sql += f" ON CONFLICT (key) DO UPDATE SET {sets}"
        if params:
            sql = sql.replace("%", "%%").replace("?", "%s")
            return self.conn.execute(sql, tuple(params))
        return self.conn.execute(sql)

    def commit(self):
        pass

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A running `berth serve` process."""

    def __init__(self, data_dir, port=None, extra_args=(), runtime_config=None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log = self.data_dir.parent / f"berth-{self.port}.log"
        # Given: stores shared with other hosts (test_scale_out.py).
        self.runtime_config = runtime_config
        self.storage = FsStorage(self.data_dir)
        if runtime_config is None and ON_POSTGRES:
            fresh = not self.data_dir.exists()
            self.postgres_url = postgres_database(self.data_dir, fresh=fresh)
            self.runtime_config = self.data_dir.parent / f"{self.data_dir.name}-runtime-config.toml"
            text = f'[metadata_store.default]\ntype = "postgres"\nurl = "{self.postgres_url}"\npool_size = 8\n'
            if ON_S3:
                prefix = s3_prefix(self.data_dir, fresh=fresh)
                self.storage = S3Storage(prefix)
                endpoint, key, secret, bucket = s3_settings()
                text += (f'[blob_store.default]\ntype = "s3"\nendpoint = "{endpoint}"\nregion = "garage"\n'
                         f'bucket = "{bucket}"\naccess_key_id = "{key}"\nsecret_access_key = "{secret}"\n'
                         f'prefix = "{prefix}"\n')
            if ON_SPIN:
                # The host (bootstrap, `berth iam`) and the Spin build's
                # adapters share the keys, as a deployment would.
                self.keys = {name: hashlib.sha256(f"{name}:{self.data_dir.resolve()}".encode()).hexdigest()
                             for name in ("token_signing_key", "sealing_key")}
                text += "[credentials]\n" + "".join(f'{k} = "{v}"\n' for k, v in self.keys.items())
                self.spin_variables = dict(self.keys, metadata_postgres_url=self.postgres_url,
                                           metadata_postgres_host=POSTGRES_URL.split("@")[-1].split("/")[0],
                                           s3_endpoint=endpoint, s3_region="garage", s3_bucket=bucket,
                                           s3_prefix=prefix, s3_access_key_id=key, s3_secret_access_key=secret)
            self.runtime_config.write_text(text)

    @property
    def store_args(self):
        """The arguments that point `berth serve` and `berth iam` at this
        registry's stores (none for the embedded defaults)."""
        return ["--runtime-config-file", str(self.runtime_config)] if self.runtime_config else []

    def db(self):
        """The registry's stored metadata, for SQL over `kv` and `counters`."""
        if ON_POSTGRES:
            return PostgresMetadata(self.postgres_url)
        import sqlite3
        return sqlite3.connect(self.data_dir / "metadata.db", timeout=30)

    def stored_bytes(self) -> bytes:
        """Everything the registry's metadata store holds, as bytes (to look
        for what must never be stored in clear)."""
        if ON_POSTGRES:
            with self.db() as db:
                rows = db.execute("SELECT key, value FROM kv").fetchall()
                rows += [(k, str(v).encode()) for k, v in db.execute("SELECT key, value FROM counters")]
            return b"".join(k.encode() + bytes(v) for k, v in rows)
        return b"".join(f.read_bytes() for f in self.data_dir.glob("metadata.db*"))

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def anon_url(self):
        return f"http://{self.host}"

    @property
    def url(self):
        """The administrator's URL: requests sends its credentials (Basic)."""
        return f"http://{ADMIN[0]}:{ADMIN[1]}@{self.host}"

    @property
    def creds(self):
        return f"{ADMIN[0]}:{ADMIN[1]}"

    def iam(self, *args):
        """Runs `berth iam …` on this registry's data; returns its output as a dict."""
        r = subprocess.run([str(BERTH), "iam", "--data-dir", str(self.data_dir), *self.store_args, *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)

    def start(self):
        # Tests push to many organizations; SWR's default quota is 5 per user.
        manifest = ROOT / "infra" / "spin" / "spin.toml" if ON_SPIN else ROOT / "spin.toml"
        cmd = [str(BERTH), "serve", "--listen", self.host, "--data-dir", str(self.data_dir),
               "--manifest", str(manifest), "--var", "namespace_quota=1000", *self.store_args,
               *self.extra_args]
        env = dict(os.environ, BERTH_ADMIN_PASSWORD=ADMIN[1])
        if ON_SPIN:
            # Variables as Spin takes them from the environment; the
            # adapters reach the bucket on loopback, which the host's
            # outbound guard refuses unless allowed.
            env.update({f"SPIN_VARIABLE_{k.upper()}": v for k, v in self.spin_variables.items()})
            cmd += ["--outbound-allow", "127.0.0.1/32"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth exited: {self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("berth did not become healthy")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        self.stop(signal.SIGKILL)

    def kill_during_tick(self, job, after):
        """Ticks `job` (as the administrator) and kill -9s the host `after`
        seconds into the run; the tick's own answer is lost with the host."""
        import threading

        def tick():
            try:
                requests.post(f"http://{self.host}/berth/jobs/{job}/tick", auth=ADMIN)
            except requests.RequestException:
                pass  # the host dies under it

        t = threading.Thread(target=tick)
        t.start()
        time.sleep(after)
        self.kill()
        t.join()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    r = Registry(tmp_path_factory.mktemp("berth") / "data").start()
    yield r
    r.stop()


@pytest.fixture
def fresh_registry(tmp_path):
    r = Registry(tmp_path / "data").start()
    yield r
    r.stop()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(url, repo, data: bytes) -> str:
    digest = sha256(data)
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    return digest


def put_manifest(url, repo, ref, manifest: dict, media_type=None):
    body = json.dumps(manifest).encode()
    mt = media_type or manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    r = requests.put(f"{url}/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": mt})
    return r, sha256(body), body


def image(url, repo, layers=(b"layer",), tag=None, config=None):
    """Pushes blobs and an OCI image manifest; returns (manifest dict, digest)."""
    config = config or json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = push_blob(url, repo, config)
    descs = []
    for l in layers:
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": push_blob(url, repo, l), "size": len(l)})
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
         "layers": descs}
    r, digest, _ = put_manifest(url, repo, tag or sha256(json.dumps(m).encode()), m)
    assert r.status_code == 201, r.text
    return m, digest


def tag_many(url, repo, n):
    """One image tagged t0000 … t<n-1> (pushed in that order); its digest."""
    m, digest = image(url, repo, tag="t0000", layers=[b"one layer for every tag"])
    for i in range(1, n):
        r, _, _ = put_manifest(url, repo, f"t{i:04d}", m)
        assert r.status_code == 201, r.text
    return digest


def all_events(reg, kind):
    """Every event of type `kind` in the registry's event log, paged."""
    out, after = [], None
    while True:
        page = requests.get(f"{reg.url}/berth/v1/events",
                            params={"limit": 1000, **({"after": after} if after else {})}).json()
        out += [e for e in page["events"] if e["type"] == kind]
        after = page.get("next")
        if not after:
            return out


def layer_tar_gz(files: dict, seed=0) -> bytes:
    """A gzip (level 0: stable, cheap) tar layer with the given files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1700000000 + seed
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=0, mtime=0)


def write_oci_layout(path: Path, images: dict, index_platforms=None):
    """Writes an OCI image layout with one image per tag.

    images: tag -> list of layer bytes. With index_platforms, the tag points at
    an index of one image per platform instead."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes):
        d = sha256(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    def one_image(layers, arch="amd64"):
        diff_ids = [sha256(gzip.decompress(l)) for l in layers]
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "config": {"Cmd": ["/bin/true"]}}).encode()
        m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(l), "size": len(l)} for l in layers]}
        body = json.dumps(m).encode()
        return {"mediaType": m["mediaType"], "digest": blob(body), "size": len(body), "platform": {"architecture": arch, "os": "linux"}}

    manifests = []
    for tag, layers in images.items():
        if index_platforms:
            idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [one_image(layers, arch) for arch in index_platforms]}
            body = json.dumps(idx).encode()
            desc = {"mediaType": idx["mediaType"], "digest": blob(body), "size": len(body)}
        else:
            desc = one_image(layers)
            desc.pop("platform")
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        manifests.append(desc)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}))
    return manifests


def tenant_client(reg, tenant, password, namespaces=()):
    """Creates `tenant` (its account user has `password`) with an access key
    and `namespaces`; returns (the official SDK's SwrClient, project id)."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkswr.v2 import CreateNamespaceRequest, CreateNamespaceRequestBody, SwrClient
    t = reg.iam("tenant-create", tenant, "--password", password)
    key = reg.iam("key-create", tenant, tenant)
    client = SwrClient.new_builder().with_credentials(
        BasicCredentials(key["ak"], key["sk"], t["project_id"])).with_endpoints([reg.anon_url]).build()
    for ns in namespaces:
        client.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace=ns)))
    return client, t["project_id"]


def signed_call(reg, key, project, method, path, payload):
    """A management call with a JSON body (fields the SDK's models lack
    included), signed as the official SDK signs with access key `key`."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer
    from urllib.parse import parse_qsl
    data = json.dumps(payload).encode() if payload is not None else b""
    path, _, query = path.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    req = SdkRequest(method=method, schema="http", host=reg.host, resource_path=path, query_params=params,
                     header_params={"Content-Type": "application/json"}, body=data)
    Signer(BasicCredentials(key["ak"], key["sk"], project)).sign(req)
    return requests.request(method, f"{reg.anon_url}{path}", params=params, data=data,
                            headers=dict(req.header_params))


def skopeo_push(host, creds, ref, tmp_path, content=b"pushed by skopeo"):
    """Pushes a one-layer image with skopeo logged in as `creds`
    ("user:password") to `host/ref` ("repo:tag"); the finished process."""
    src = tmp_path / "skopeo-src"
    write_oci_layout(src, {"v1": [layer_tar_gz({"f.txt": content})]})
    env = dict(os.environ, HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    return subprocess.run(["skopeo", "--tmpdir", str(tmp_path), "copy", "--dest-tls-verify=false",
                           "--dest-creds", creds, f"oci:{src}:v1", f"docker://{host}/{ref}"],
                          capture_output=True, text=True, env=env, timeout=300)


def pytest_collection_modifyitems(config, items):
    """Scale-out tests need PostgreSQL whatever the backend: they run in the
    passes on PostgreSQL (BERTH_TEST_BACKEND=postgres or scale-out) and are
    left out of the embedded one (deselected, not skipped)."""
    if ON_POSTGRES:
        return
    keep = [i for i in items if "test_scale_out.py" not in str(i.fspath)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
