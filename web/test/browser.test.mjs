// The browser test: headless Chromium (WebGPU on SwiftShader) runs the demo page with the
// tiny fixture model and checks its numbers against the native library and the PyTorch
// reference, that the depth canvas and the 3D view were drawn, that weights load from a local
// file picker and from fp16 shards with the same numbers, that the fake webcam gives a depth
// frame, that a corrupted shard is refused with a visible error, and that a reload takes the
// weights from the Cache API without a network request.
//
// Usage: node web/test/browser.test.mjs http://127.0.0.1:PORT/   (scripts/test-web.sh does it)
// The server must serve web/ with web/test/out/ prepared by scripts/test-web.sh.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const base = process.argv[2] ?? 'http://127.0.0.1:8765/';
const results = join(here, '..', 'test-results');
mkdirSync(results, { recursive: true });

// fp32 tolerance on the relative L2 error, the native golden tests' (crates/da3/tests/golden.rs).
const TOL = 1e-4;

// Burn's matmul autotune tries a kernel whose WGSL Chromium rejects and discards it; with
// autotune off (the default build) these do not appear, but they are harmless when they do.
const NOISE = [/autotune/i, /tuner/i, /Failed to (create|compile) (compute )?(pipeline|shader module)/i,
  /WGSL.*(error|warning)/i, /Error while parsing WGSL/i, /Invalid (ComputePipeline|ShaderModule)/i];

// Console errors the test provokes on purpose (the corrupted shard), matched and counted
// instead of failing the run.
const expected = [];

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures += 1;
}

function parseSafetensors(buffer) {
  // A copy: a Node Buffer may be a view into a shared pool, and slices of it share that pool.
  const bytes = new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    out[name] = new Float32Array(bytes.slice(8 + n + a, 8 + n + b).buffer);
  }
  return out;
}

function relL2(ours, ref) {
  if (ours.length !== ref.length) return Infinity;
  let num = 0; let den = 0;
  for (let i = 0; i < ref.length; i++) { num += (ours[i] - ref[i]) ** 2; den += ref[i] ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

function compare(label, ours, ref) {
  const err = relL2(Float32Array.from(ours), ref);
  check(err <= TOL, `${label}: relative L2 error ${err.toExponential(2)} (tolerance ${TOL})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu',
    // A synthetic camera (moving test pattern) that getUserMedia gets without a prompt.
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});
const context = await browser.newContext({ viewport: { width: 1200, height: 1400 } });
await context.grantPermissions(['camera'], { origin: new URL(base).origin });
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => {
  if (m.type() !== 'error' || NOISE.some((re) => re.test(m.text()))) return;
  const hit = expected.find((e) => e.re.test(m.text()));
  if (hit) hit.seen += 1;
  else consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));

const waitReady = async () => {
  await page.waitForFunction(() => window.da3?.ready, null, { timeout: 300_000 });
  return page.evaluate(() => ({ error: window.da3.error, gpu: document.getElementById('gpu-status').textContent,
    weights: document.getElementById('weights-status').textContent }));
};

/** Runs the PyTorch golden's normalized views (tiny_s2) through the loaded model. */
const runGolden = () => page.evaluate(async () => {
  const bytes = new Uint8Array(await (await fetch('test/out/tiny_s2.golden.safetensors')).arrayBuffer());
  const { parseSafetensorsF32 } = await import('./weights.js');
  const g = parseSafetensorsF32(bytes);
  const [, s, , h, w] = g['golden.images'].shape;
  const r = await window.da3.runNormalized(g['golden.images'].data, s, h, w, 'saddle_balanced');
  const arr = (x) => [...x];
  return { ours: { depth: arr(r.depth), conf: arr(r.conf), extrinsics: arr(r.extrinsics), intrinsics: arr(r.intrinsics) },
    ref: { depth: arr(g['golden.depth'].data), conf: arr(g['golden.depth_conf'].data),
      extrinsics: arr(g['golden.extrinsics'].data), intrinsics: arr(g['golden.intrinsics'].data) } };
});
const KEYS = ['depth', 'conf', 'extrinsics', 'intrinsics'];
const weightsStatus = () => page.evaluate(() => {
  const el = document.getElementById('weights-status');
  return { text: el.textContent, error: el.classList.contains('error') };
});
const timed = async (label, f) => {
  const t = Date.now();
  const r = await f();
  console.log(`  (${label}: ${((Date.now() - t) / 1000).toFixed(1)} s)`);
  return r;
};

try {
  // 1. Page load: WebGPU adapter, weights from the manifest (several f32 shards, sha256-checked).
  const url = `${base}index.html?manifest=test/out/tiny/manifest.json&res=56`;
  await page.goto(url);
  let st = await waitReady();
  console.log(`  ${st.gpu}\n  ${st.weights}`);
  check(!st.error, `page booted without error (${st.error ?? 'none'})`);
  check(/Loaded tiny/.test(st.weights), 'tiny model loaded from shards');
  check(/sha256 verified/.test(st.weights) && /downloaded/.test(st.weights), 'shards downloaded and verified');

  // 2. Fixture photos through the page's file picker: preprocessing + network in WASM/WebGPU,
  //    compared with the native library's run (web/test/fixtures/native_expected.safetensors).
  await page.setInputFiles('#image-files', [join(here, 'fixtures/view_a.png'), join(here, 'fixtures/view_b.png')]);
  await page.waitForFunction(() => !document.getElementById('run').disabled, null, { timeout: 60_000 });
  await page.click('#run');
  await page.waitForFunction(() => window.da3.lastResult, null, { timeout: 300_000 });
  const got = await page.evaluate(() => {
    const r = window.da3.lastResult;
    return { ...r, depth: [...r.depth], conf: [...r.conf], extrinsics: [...r.extrinsics], intrinsics: [...r.intrinsics] };
  });
  console.log(`  ${got.views} views ${got.width}x${got.height}; timings ${JSON.stringify(got.timings)}`);
  const native = parseSafetensors(readFileSync(join(here, 'fixtures/native_expected.safetensors')));
  check(got.views === 2 && got.width === 56 && got.height === 42, 'processed size 2 x 56x42 like the native run');
  compare('photos: depth vs native', got.depth, native.depth);
  compare('photos: conf vs native', got.conf, native.conf);
  compare('photos: extrinsics vs native', got.extrinsics, native.extrinsics);
  compare('photos: intrinsics vs native', got.intrinsics, native.intrinsics);

  // 3. Rendering: the depth canvas holds a colour map and the WebGL view drew points.
  const drawn = await page.evaluate(() => {
    const depth = document.querySelector('canvas.depth');
    const d = depth.getContext('2d').getImageData(0, 0, depth.width, depth.height).data;
    const colours = new Set();
    for (let i = 0; i < d.length; i += 4) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    const gl = document.querySelector('#viewer canvas');
    const c = new OffscreenCanvas(gl.width, gl.height);
    const ctx = c.getContext('2d');
    ctx.drawImage(gl, 0, 0);
    const v = ctx.getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < v.length; i += 4) if (Math.abs(v[i] - 0x11) + Math.abs(v[i + 1] - 0x13) + Math.abs(v[i + 2] - 0x18) > 30) lit += 1;
    return { depthColours: colours.size, viewerLit: lit, viewerPixels: v.length / 4 };
  });
  check(drawn.depthColours > 50, `depth canvas colourized (${drawn.depthColours} distinct colours)`);
  check(drawn.viewerLit > 200, `3D view drew the cloud and frustums (${drawn.viewerLit} of ${drawn.viewerPixels} pixels lit)`);
  const depthShot = await page.locator('canvas.depth').first().screenshot({ path: join(results, 'depth.png') });
  const viewShot = await page.locator('#viewer').screenshot({ path: join(results, 'viewer.png') });
  await page.screenshot({ path: join(results, 'page.png'), fullPage: true });
  check(depthShot.length > 500 && viewShot.length > 2000, `screenshots non-empty (depth ${depthShot.length} B, 3D ${viewShot.length} B)`);

  // 4. Golden: the PyTorch reference's output for the tiny model (tools/golden), fed the same
  //    normalized views.
  const golden = await timed('golden', runGolden);
  for (const k of KEYS) compare(`golden tiny_s2: ${k} vs PyTorch`, golden.ours[k], Float32Array.from(golden.ref[k]));

  // 5. Weights from the local file picker: the manifest and its shards picked from disk (each
  //    sha256-verified), then the same golden numbers.
  const local = join(here, 'out', 'tiny');
  const localFiles = ['manifest.json', ...JSON.parse(readFileSync(join(local, 'manifest.json'), 'utf8')).files.map((f) => f.name)];
  await timed('local picker', async () => {
    await page.setInputFiles('#weights-files', localFiles.map((f) => join(local, f)));
    await page.waitForFunction(() => { const el = document.getElementById('weights-status');
      return el.classList.contains('error') || /^Loaded .*local file/.test(el.textContent); }, null, { timeout: 60_000 });
  });
  let ws = await weightsStatus();
  console.log(`  ${ws.text}`);
  check(!ws.error && /Loaded tiny .*4 local file/.test(ws.text), 'tiny model loaded from 4 picked local files');
  const fromPicker = await timed('golden', runGolden);
  for (const k of KEYS) compare(`picked files: ${k} vs PyTorch`, fromPicker.ours[k], Float32Array.from(fromPicker.ref[k]));

  // 6. fp16 shards (URL): widened to f32 on upload, so the output must equal an f32 run of the
  //    same fp16-rounded weights (tiny-f16-as-f32, one f32 shard) to float rounding; the fp16
  //    rounding itself only moves it a little from the fp32 PyTorch golden.
  const loadUrl = (u) => timed(`load ${u}`, () => page.evaluate((u) => window.da3.loadManifest(u), u));
  await loadUrl('test/out/tiny-f16/manifest.json');
  ws = await weightsStatus();
  console.log(`  ${ws.text}`);
  check(!ws.error && /Loaded tiny .*f16/.test(ws.text), 'tiny model loaded from fp16 shards');
  const f16 = await timed('golden', runGolden);
  await loadUrl('test/out/tiny-f16-as-f32/manifest.json');
  const f16as32 = await timed('golden', runGolden);
  for (const k of KEYS) {
    const err = relL2(Float32Array.from(f16.ours[k]), Float32Array.from(f16as32.ours[k]));
    check(err <= 1e-6, `fp16 shards: ${k} equals the f32 run of the fp16-rounded weights (relative L2 ${err.toExponential(2)}, tolerance 1e-6)`);
  }
  const f16Err = relL2(Float32Array.from(f16.ours.depth), Float32Array.from(f16.ref.depth));
  check(f16Err <= 1e-2, `fp16 shards: depth vs fp32 PyTorch golden ${f16Err.toExponential(2)} (fp16 rounding; tolerance 1e-2)`);

  // 7. Webcam (single view): Chromium's fake camera through getUserMedia, one captured frame.
  await timed('webcam frame', async () => {
    await page.evaluate(() => { window.da3.lastResult = null; });
    await page.click('#webcam');
    await page.waitForFunction(() => { const v = document.getElementById('video'); return v.readyState >= 2 && v.videoWidth > 0; },
      null, { timeout: 60_000 });
    await page.click('#snap');
    await page.waitForFunction(() => window.da3.lastResult || /error|fail/i.test(document.getElementById('run-status').className),
      null, { timeout: 300_000 });
  });
  const cam = await page.evaluate(() => {
    const r = window.da3.lastResult;
    if (!r) return { error: document.getElementById('run-status').textContent };
    const v = document.getElementById('video');
    const d = [...r.depth];
    const mean = d.reduce((a, b) => a + b, 0) / d.length;
    const sd = Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / d.length);
    const c = document.querySelector('canvas.depth');
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    for (let i = 0; i < px.length; i += 4) colours.add((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
    return { views: r.views, width: r.width, height: r.height, video: `${v.videoWidth}x${v.videoHeight}`,
      finitePositive: d.every((x) => Number.isFinite(x) && x > 0), mean, sd, colours: colours.size };
  });
  console.log(`  webcam: ${JSON.stringify(cam)}`);
  check(cam.views === 1 && cam.width === 56 && cam.height === 42, `webcam frame ${cam.video} -> 1 view at 56x42`);
  check(cam.finitePositive && cam.sd > 1e-4 * Math.abs(cam.mean), `webcam depth is finite, positive and not constant (mean ${cam.mean}, sd ${cam.sd})`);
  check(cam.colours > 50, `webcam depth canvas colourized (${cam.colours} distinct colours)`);
  await page.evaluate(() => { const v = document.getElementById('video'); v.srcObject?.getTracks().forEach((t) => t.stop()); });

  // 8. A corrupted shard (one flipped byte) is refused by the sha256 check, the error is shown,
  //    and the bad bytes do not reach the Cache API.
  const bad = { re: /model-00001\.safetensors.*sha256 [0-9a-f]{64} does not match/, seen: 0 };
  expected.push(bad);
  const rejected = await page.evaluate((u) => window.da3.loadManifest(u).then(() => null, (e) => String(e.message ?? e)),
    'test/out/tiny-corrupt/manifest.json');
  ws = await weightsStatus();
  const visible = await page.locator('#weights-status').isVisible();
  console.log(`  corrupted: ${ws.text}`);
  check(rejected !== null && bad.re.test(rejected), 'loading the corrupted shard rejects with the sha256 mismatch');
  check(ws.error && visible && bad.re.test(ws.text), 'the sha256 error is shown in the weights status (error style)');
  const cached = await page.evaluate(async () => (await (await caches.open('da3-weights-v1')).keys()).map((r) => r.url));
  check(!cached.some((u) => u.includes('tiny-corrupt/model-00001')), 'the corrupted shard was not cached');
  check(bad.seen === 1, `the page logged the sha256 error once (${bad.seen})`);

  // 9. Reload: the shards come from the Cache API (still verified), without a network request.
  const shardRequests = [];
  const onRequest = (r) => { if (/\.safetensors(\?|$)/.test(r.url())) shardRequests.push(r.url()); };
  page.on('request', onRequest);
  await timed('reload', async () => { await page.reload(); st = await waitReady(); });
  page.off('request', onRequest);
  console.log(`  after reload: ${st.weights}`);
  check(/Loaded tiny/.test(st.weights) && /all from the browser cache/.test(st.weights), 'reload takes every shard from the Cache API');
  check(shardRequests.length === 0, `reload made no network request for a shard (${shardRequests.length}${shardRequests.length ? ': ' + shardRequests.join(', ') : ''})`);

  // 10. A browser without WebGPU gets a clear message.
  const plain = await context.newPage();
  await plain.addInitScript(() => { Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }); });
  await plain.goto(`${base}index.html`);
  await plain.waitForFunction(() => window.da3?.ready, null, { timeout: 60_000 });
  const banner = await plain.evaluate(() => !document.getElementById('no-webgpu').hidden
    && /no WebGPU/i.test(document.getElementById('no-webgpu').textContent));
  check(banner, 'no-WebGPU browsers see the banner');
  await plain.close();
} catch (e) {
  check(false, `test aborted: ${e.stack ?? e}`);
}

check(consoleErrors.length === 0, `no console errors besides autotune noise${consoleErrors.length ? ':\n  ' + consoleErrors.join('\n  ') : ''}`);
writeFileSync(join(results, 'console-errors.txt'), consoleErrors.join('\n'));
await browser.close();
console.log(failures === 0 ? 'browser test passed' : `browser test FAILED (${failures})`);
process.exit(failures === 0 ? 0 : 1);
