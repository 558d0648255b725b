// The browser test: headless Chromium (WebGPU on SwiftShader) runs the demo page with the
// tiny fixture model and checks its numbers against the native library and the PyTorch
// reference, then that the depth canvas and the 3D view were drawn and that a reload takes
// the weights from the Cache API.
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
    '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
});
const context = await browser.newContext({ viewport: { width: 1200, height: 1400 } });
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error' && !NOISE.some((re) => re.test(m.text()))) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));

const waitReady = async () => {
  await page.waitForFunction(() => window.da3?.ready, null, { timeout: 300_000 });
  return page.evaluate(() => ({ error: window.da3.error, gpu: document.getElementById('gpu-status').textContent,
    weights: document.getElementById('weights-status').textContent }));
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
  const golden = await page.evaluate(async () => {
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
  for (const k of ['depth', 'conf', 'extrinsics', 'intrinsics']) {
    compare(`golden tiny_s2: ${k} vs PyTorch`, golden.ours[k], Float32Array.from(golden.ref[k]));
  }

  // 5. Reload: the shards come from the Cache API, still verified.
  await page.reload();
  st = await waitReady();
  console.log(`  after reload: ${st.weights}`);
  check(/all from the browser cache/.test(st.weights), 'reload takes every shard from the Cache API');

  // 6. A browser without WebGPU gets a clear message.
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
