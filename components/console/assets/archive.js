// Image archives in the browser: `docker save` tarballs (manifest.json,
// with or without an OCI layout inside) and OCI image layout tarballs
// (oci-layout, index.json, blobs/). Only tar headers and the small JSON
// files are read into memory; layers are sent to the registry as slices of
// the file, which the browser streams from disk.

const BLOCK = 512;
/// Bytes per PATCH: progress moves at least this often.
export const CHUNK = 16 * 1024 * 1024;

export class ArchiveError extends Error {}

async function bytes(blob) {
  return new Uint8Array(await blob.arrayBuffer());
}

function text(u8) {
  return new TextDecoder().decode(u8);
}

function field(h, start, len) {
  const raw = h.subarray(start, start + len);
  const end = raw.indexOf(0);
  return text(end >= 0 ? raw.subarray(0, end) : raw);
}

function octal(h, start, len) {
  const s = field(h, start, len).trim();
  if (!/^[0-7]*$/.test(s)) throw new ArchiveError("not a tar archive (bad header)");
  return s ? parseInt(s, 8) : 0;
}

/// Every regular file of a tar archive: name → {offset, size}, reading
/// only the headers (and PAX/GNU long-name records).
export async function index(file) {
  const head = await bytes(file.slice(0, 2));
  if (head[0] === 0x1f && head[1] === 0x8b) {
    throw new ArchiveError("the archive is gzip-compressed: upload the .tar (gunzip it first)");
  }
  const files = new Map();
  let offset = 0;
  let longName = null;
  let paxPath = null;
  let paxSize = null;
  while (offset + BLOCK <= file.size) {
    const h = await bytes(file.slice(offset, offset + BLOCK));
    if (h.every((b) => b === 0)) break;
    const magic = field(h, 257, 6);
    let size = octal(h, 124, 12);
    const type = String.fromCharCode(h[156] || 48);
    let name = field(h, 0, 100);
    if (magic.startsWith("ustar")) {
      const prefix = field(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const data = offset + BLOCK;
    if (type === "x") {
      const records = text(await bytes(file.slice(data, data + size)));
      for (const line of records.split("\n")) {
        const m = /^\d+ ([^=]+)=(.*)$/.exec(line);
        if (m && m[1] === "path") paxPath = m[2];
        if (m && m[1] === "size") paxSize = parseInt(m[2], 10);
      }
    } else if (type === "L") {
      longName = text(await bytes(file.slice(data, data + size))).replace(/\0+$/, "");
    } else {
      if (paxSize !== null) size = paxSize;
      const path = (paxPath || longName || name).replace(/^\.\//, "");
      if (type === "0" || type === "\0" || type === "7") files.set(path, { offset: data, size });
      longName = paxPath = paxSize = null;
    }
    offset = data + Math.ceil(size / BLOCK) * BLOCK;
  }
  if (files.size === 0) throw new ArchiveError("not a tar archive, or an empty one");
  return files;
}

function entry(file, files, path) {
  const e = files.get(path);
  if (!e) throw new ArchiveError(`the archive has no ${path}`);
  return { blob: file.slice(e.offset, e.offset + e.size), size: e.size };
}

async function json(file, files, path) {
  try {
    return JSON.parse(text(await bytes(entry(file, files, path).blob)));
  } catch (e) {
    if (e instanceof ArchiveError) throw e;
    throw new ArchiveError(`${path} is not valid JSON`);
  }
}

function digestFromPath(path) {
  const m = /(?:^|\/)blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(path) || /^([0-9a-f]{64})\.json$/.exec(path);
  if (!m) return null;
  return m.length === 3 ? `${m[1]}:${m[2]}` : `sha256:${m[1]}`;
}

async function sha256(blob) {
  if (!globalThis.crypto?.subtle) {
    throw new ArchiveError("this page is not a secure context (use HTTPS) and the archive names no digest");
  }
  const d = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return `sha256:${[...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/// `registry.example/team/app:1.0` → {repo: "app", tag: "1.0"}.
export function splitReference(ref) {
  const at = ref.lastIndexOf(":");
  const slash = ref.lastIndexOf("/");
  const [name, tag] = at > slash ? [ref.slice(0, at), ref.slice(at + 1)] : [ref, "latest"];
  return { repo: name.slice(name.lastIndexOf("/") + 1).toLowerCase(), tag };
}

/// The images of an archive: [{repo, tags, blobs: [{digest, size, blob}],
/// manifests: [{digest?, mediaType, body (Uint8Array), tags}]}], the last
/// manifest of each image being the one tagged.
export async function images(file) {
  const files = await index(file);
  if (files.has("index.json") && files.has("oci-layout")) return ociImages(file, files);
  if (files.has("manifest.json")) return dockerImages(file, files);
  throw new ArchiveError("neither a docker save archive (manifest.json) nor an OCI layout (oci-layout, index.json)");
}

async function dockerImages(file, files) {
  const list = await json(file, files, "manifest.json");
  if (!Array.isArray(list) || list.length === 0) throw new ArchiveError("manifest.json lists no image");
  const out = [];
  for (const item of list) {
    const refs = item.RepoTags || [];
    if (refs.length === 0) throw new ArchiveError("an image in manifest.json has no RepoTags (save it by name:tag)");
    const config = entry(file, files, item.Config);
    const configBody = await bytes(config.blob);
    const configDigest = digestFromPath(item.Config) || (await sha256(config.blob));
    let diffIds = [];
    try {
      diffIds = JSON.parse(text(configBody)).rootfs?.diff_ids || [];
    } catch {
      throw new ArchiveError(`${item.Config} is not valid JSON`);
    }
    const layers = (item.Layers || []).map((path, i) => {
      const e = entry(file, files, path);
      const digest = digestFromPath(path) || diffIds[i];
      if (!digest) throw new ArchiveError(`no digest for layer ${path}`);
      return { digest, size: e.size, blob: e.blob };
    });
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.size },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: l.digest, size: l.size })),
    };
    const parsed = refs.map(splitReference);
    out.push({
      repo: parsed[0].repo,
      tags: parsed.map((p) => p.tag),
      blobs: [{ digest: configDigest, size: config.size, blob: config.blob }, ...layers],
      manifests: [{ mediaType: manifest.mediaType, body: new TextEncoder().encode(JSON.stringify(manifest)) }],
    });
  }
  return out;
}

function blobPath(digest) {
  const [alg, hex] = digest.split(":");
  return `blobs/${alg}/${hex}`;
}

const INDEX_TYPES = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

async function ociImages(file, files) {
  const top = await json(file, files, "index.json");
  const out = [];
  for (const desc of top.manifests || []) {
    const ann = desc.annotations || {};
    const ref = ann["io.containerd.image.name"] || ann["org.opencontainers.image.ref.name"];
    if (!ref) throw new ArchiveError(`manifest ${desc.digest} in index.json has no name (org.opencontainers.image.ref.name)`);
    const full = ref.includes(":") || ref.includes("/") ? ref : `${file.name.replace(/\.tar$/, "")}:${ref}`;
    const { repo, tag } = splitReference(full);
    const image = { repo, tags: [tag], blobs: [], manifests: [] };
    await walk(file, files, desc, image);
    out.push(image);
  }
  if (out.length === 0) throw new ArchiveError("index.json lists no manifest");
  return out;
}

/// Children before parents: blobs, then manifests bottom-up.
async function walk(file, files, desc, image) {
  const body = await bytes(entry(file, files, blobPath(desc.digest)).blob);
  let doc;
  try {
    doc = JSON.parse(text(body));
  } catch {
    throw new ArchiveError(`manifest ${desc.digest} is not valid JSON`);
  }
  const mediaType = desc.mediaType || doc.mediaType;
  if (INDEX_TYPES.includes(mediaType)) {
    for (const child of doc.manifests || []) {
      // Platforms the archive does not hold are left out, as docker does.
      if (files.has(blobPath(child.digest))) await walk(file, files, child, image);
    }
  } else {
    for (const d of [doc.config, ...(doc.layers || [])].filter(Boolean)) {
      const e = entry(file, files, blobPath(d.digest));
      image.blobs.push({ digest: d.digest, size: e.size, blob: e.blob });
    }
  }
  image.manifests.push({ digest: desc.digest, mediaType, body });
}

/// Pushes `image` into `org` through the registry API, calling
/// `progress(sentBytes)` as blobs go; `request(method, url, init)` sends
/// with the session. The tags pushed.
export async function push(image, org, request, progress) {
  const name = `${org}/${image.repo}`;
  let sent = 0;
  for (const b of image.blobs) {
    const head = await request("HEAD", `/v2/${name}/blobs/${b.digest}`);
    if (head.ok) {
      sent += b.size;
      progress(sent);
      continue;
    }
    let r = await request("POST", `/v2/${name}/blobs/uploads/`);
    if (r.status !== 202) throw new ArchiveError(await failure(r));
    let location = r.headers.get("Location");
    for (let at = 0; at < b.size; at += CHUNK) {
      const end = Math.min(at + CHUNK, b.size);
      r = await request("PATCH", location, {
        body: b.blob.slice(at, end),
        headers: { "Content-Type": "application/octet-stream", "Content-Range": `${at}-${end - 1}` },
      });
      if (r.status !== 202) throw new ArchiveError(await failure(r));
      location = r.headers.get("Location");
      sent += end - at;
      progress(sent);
    }
    const sep = location.includes("?") ? "&" : "?";
    r = await request("PUT", `${location}${sep}digest=${encodeURIComponent(b.digest)}`);
    if (r.status !== 201) throw new ArchiveError(await failure(r));
  }
  const last = image.manifests.length - 1;
  for (const [i, m] of image.manifests.entries()) {
    const refs = i === last ? image.tags : [m.digest];
    for (const ref of refs) {
      const r = await request("PUT", `/v2/${name}/manifests/${ref}`, {
        body: m.body,
        headers: { "Content-Type": m.mediaType },
      });
      if (r.status !== 201) throw new ArchiveError(await failure(r));
    }
  }
  return image.tags.map((t) => `${name}:${t}`);
}

async function failure(r) {
  try {
    const body = await r.json();
    return body.errors?.[0]?.message || body.errorMsg || `HTTP ${r.status}`;
  } catch {
    return `HTTP ${r.status}`;
  }
}

export function totalBytes(images) {
  return images.reduce((n, im) => n + im.blobs.reduce((m, b) => m + b.size, 0), 0);
}
