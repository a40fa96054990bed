#!/usr/bin/env bash
# 1 GiB monolithic push (POST, then one PUT with the layer) and pull with curl on loopback,
# Berth and CNCF Distribution (Debian's docker-registry) side by side,
# alternating A B A B, medians of the rounds. A stopgap until the full
# benchmark (issue 3); run from the repository root after `make build`.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; cp "$work/berth.log" /tmp/bench-berth.log 2>/dev/null; rm -rf "$work"' EXIT

head -c $((1 << 30)) /dev/urandom > "$work/layer"
digest="sha256:$(sha256sum "$work/layer" | cut -d' ' -f1)"

./target/release/berth serve --listen 127.0.0.1:5101 --data-dir "$work/berth" --log-level warn 2>"$work/berth.log" &
cat > "$work/dist.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/dist}, delete: {enabled: true}}
http: {addr: 127.0.0.1:5102}
YML
docker-registry serve "$work/dist.yml" >/dev/null 2>&1 &
for port in 5101 5102; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
done

measure() { # name port round
  local repo="bench/r$3" t0 t1 t2
  t0=$(date +%s.%N)
  # containerd's way: POST for a session, then one PUT with the whole layer,
  # streamed with a Content-Length (curl 7.88 cannot send a file this big
  # from --data-binary). Distribution does not take a body on the POST.
  python3 - "$2" "/v2/$repo/blobs/uploads/" "$digest" "$work/layer" <<'PY'
import http.client, os, sys
port, start, digest, path = sys.argv[1:]
c = http.client.HTTPConnection("127.0.0.1", int(port), blocksize=1 << 20)
c.request("POST", start)
r = c.getresponse()
r.read()
loc = r.getheader("Location")
loc = loc.split(f"127.0.0.1:{port}", 1)[-1]
loc += ("&" if "?" in loc else "?") + "digest=" + digest
with open(path, "rb") as f:
    c.request("PUT", loc, body=f, headers={"Content-Length": str(os.path.getsize(path)), "Content-Type": "application/octet-stream"})
r = c.getresponse()
assert r.status == 201, (r.status, r.read())
PY
  t1=$(date +%s.%N)
  curl -sf -o /dev/null "http://127.0.0.1:$2/v2/$repo/blobs/$digest"
  t2=$(date +%s.%N)
  echo "$1 $(echo "1024 / ($t1 - $t0)" | bc -l) $(echo "1024 / ($t2 - $t1)" | bc -l)"
}

for r in $(seq "$ROUNDS"); do
  measure berth 5101 "$r"
  measure distribution 5102 "$r"
done | tee "$work/results"

python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {n: [statistics.median(float(r[i]) for r in rows if r[0] == n) for i in (1, 2)] for n in ("berth", "distribution")}
print(f"{'MiB/s (median)':<16}{'berth':>10}{'distribution':>14}{'ratio':>8}")
for i, what in enumerate(("1 GiB push", "1 GiB pull")):
    b, d = med["berth"][i], med["distribution"][i]
    print(f"{what:<16}{b:>10.0f}{d:>14.0f}{b / d:>8.2f}")
PY
