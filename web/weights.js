// Weights in the browser: fp16 (or fp32) safetensors shards described by a manifest
// (written by weights/shard.py), each verified against its sha256 and kept in the Cache API so
// a reload does not download again.
//
// manifest.json: { "format": "da3-shards/1", "model": "da3-small", "dtype": "f16",
//                  "config": { ...config.json... },
//                  "files": [ { "name": "model-00000.safetensors", "sha256": "<hex>", "bytes": N }, ... ] }

const CACHE_NAME = 'da3-weights-v1';

/** Hex sha256 of bytes (SubtleCrypto; needs a secure context: https or 127.0.0.1/localhost). */
export async function sha256Hex(bytes) {
  if (!globalThis.crypto?.subtle) {
    throw new Error('crypto.subtle is unavailable: serve the page over https or from localhost/127.0.0.1');
  }
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function verify(file, bytes, source) {
  if (file.bytes !== undefined && bytes.byteLength !== file.bytes) {
    throw new Error(`${file.name} (${source}): ${bytes.byteLength} bytes, the manifest says ${file.bytes}; re-download or re-run weights/shard.py`);
  }
  const got = await sha256Hex(bytes);
  if (got !== file.sha256) {
    throw new Error(`${file.name} (${source}): sha256 ${got} does not match the manifest's ${file.sha256}; the file is corrupt or from another conversion`);
  }
}

/** Fetches url into one Uint8Array, calling onBytes(n) as chunks arrive. */
async function download(url, onBytes) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status} ${res.statusText}`);
  if (!res.body) {
    const buf = new Uint8Array(await res.arrayBuffer());
    onBytes(buf.byteLength);
    return buf;
  }
  const reader = res.body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.byteLength;
    onBytes(value.byteLength);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}

function checkManifest(manifest, where) {
  if (!manifest || !Array.isArray(manifest.files) || manifest.files.length === 0 || !manifest.config) {
    throw new Error(`${where} is not a da3 weight manifest (needs "config" and a non-empty "files" list); make one with weights/shard.py`);
  }
  for (const f of manifest.files) {
    if (typeof f.name !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256 ?? '')) {
      throw new Error(`${where}: file entry ${JSON.stringify(f)} needs a "name" and a hex "sha256"`);
    }
  }
}

/**
 * Loads the shards of a manifest URL. onProgress({loaded, total, file, cached}) reports bytes.
 * Returns {manifest, shards: Uint8Array[], cachedFiles, downloadedFiles}.
 */
export async function loadFromManifestUrl(manifestUrl, { onProgress = () => {}, useCache = true } = {}) {
  const base = new URL(manifestUrl, location.href);
  const res = await fetch(base, { cache: 'no-cache' });
  if (!res.ok) throw new Error(`GET ${base}: HTTP ${res.status}; is the manifest URL right?`);
  const manifest = await res.json();
  checkManifest(manifest, base.href);
  const total = manifest.files.reduce((s, f) => s + (f.bytes ?? 0), 0);
  const cache = useCache && globalThis.caches ? await caches.open(CACHE_NAME) : null;
  let loaded = 0;
  let cachedFiles = 0;
  let downloadedFiles = 0;
  const shards = [];
  for (const file of manifest.files) {
    const url = new URL(file.name, base).href;
    // Keyed by URL and checksum: a new conversion under the same name is a new entry.
    const key = `${url}?sha256=${file.sha256}`;
    let bytes = null;
    const hit = cache ? await cache.match(key) : null;
    if (hit) {
      bytes = new Uint8Array(await hit.arrayBuffer());
      try {
        await verify(file, bytes, 'cache');
        cachedFiles += 1;
        loaded += bytes.byteLength;
        onProgress({ loaded, total, file: file.name, cached: true });
      } catch (e) {
        console.warn(`dropping a bad cached copy: ${e.message}`);
        await cache.delete(key);
        bytes = null;
      }
    }
    if (!bytes) {
      bytes = await download(url, (n) => { loaded += n; onProgress({ loaded, total, file: file.name, cached: false }); });
      await verify(file, bytes, url);
      downloadedFiles += 1;
      if (cache) {
        await cache.put(key, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
      }
    }
    shards.push(bytes);
  }
  return { manifest, shards, cachedFiles, downloadedFiles };
}

/**
 * Loads weights picked from disk: either a manifest.json with its shards (verified), or a
 * config.json with one or more .safetensors files (not verified: there is no checksum).
 */
export async function loadFromFiles(fileList) {
  const files = [...fileList];
  const jsons = files.filter((f) => f.name.endsWith('.json'));
  const tensors = files.filter((f) => f.name.endsWith('.safetensors'));
  if (jsons.length !== 1 || tensors.length === 0) {
    throw new Error('pick one manifest.json or config.json together with the .safetensors file(s)');
  }
  const json = JSON.parse(await jsons[0].text());
  if (json.files) {
    checkManifest(json, jsons[0].name);
    const byName = new Map(tensors.map((f) => [f.name, f]));
    const shards = [];
    for (const entry of json.files) {
      const f = byName.get(entry.name);
      if (!f) throw new Error(`${entry.name} (listed in ${jsons[0].name}) was not picked`);
      const bytes = new Uint8Array(await f.arrayBuffer());
      await verify(entry, bytes, 'local file');
      shards.push(bytes);
    }
    return { manifest: json, shards };
  }
  const shards = [];
  for (const f of tensors) shards.push(new Uint8Array(await f.arrayBuffer()));
  return { manifest: { config: json, files: tensors.map((f) => ({ name: f.name, bytes: f.size })) }, shards };
}

/** Removes every cached shard. */
export async function clearCache() {
  if (globalThis.caches) await caches.delete(CACHE_NAME);
}

/** Parses a safetensors file into {name: {dtype, shape, data: Float32Array}} (f32 only). */
export function parseSafetensorsF32(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new Error(`${name}: dtype ${t.dtype}, only F32 is read here`);
    const [a, b] = t.data_offsets;
    const raw = bytes.slice(8 + headerLen + a, 8 + headerLen + b);
    out[name] = { shape: t.shape, data: new Float32Array(raw.buffer) };
  }
  return out;
}
