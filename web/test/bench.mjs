// Time per frame of the demo page in headless Chromium (WebGPU; SwiftShader on a machine
// without a GPU, i.e. a CPU rasterizer). Loads a manifest, feeds a synthetic 504x378 photo
// (1 view, or VIEWS) and prints each frame's stage timings as soon as it finishes; the first
// frame includes WGSL pipeline compilation, later frames reuse the pipelines.
//
// Usage: node web/test/bench.mjs http://127.0.0.1:PORT/ MANIFEST_PATH [FRAMES=3] [VIEWS=1]
// Env: FRAME_TIMEOUT_S (default 3600) bounds each frame; CHROMIUM the browser binary.
import { chromium } from 'playwright-core';

const [base, manifest, frames = '3', views = '1'] = process.argv.slice(2);
if (!base || !manifest) {
  console.error('usage: node web/test/bench.mjs http://127.0.0.1:PORT/ MANIFEST_PATH [FRAMES=3] [VIEWS=1]');
  process.exit(2);
}
const frameTimeoutMs = Number(process.env.FRAME_TIMEOUT_S ?? 3600) * 1000;
const t0 = Date.now();
const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(0)} s]`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  // No GPU watchdog: on SwiftShader one submission can take minutes.
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu', '--disable-gpu-watchdog'],
});
console.log(`Chromium ${browser.version()}`);
const page = await browser.newPage();
page.setDefaultTimeout(frameTimeoutMs);
page.on('console', (m) => { if (m.type() === 'error') console.log(`console: ${m.text().slice(0, 200)}`); });
page.on('crash', () => console.log(`${stamp()} page crashed`));
await page.goto(`${base}index.html?manifest=${encodeURIComponent(manifest)}&res=504`);
await page.waitForFunction(() => window.da3?.ready, null, { timeout: 600_000 });
const boot = await page.evaluate(() => ({ error: window.da3.error, gpu: document.getElementById('gpu-status').textContent,
  weights: document.getElementById('weights-status').textContent }));
console.log(`${stamp()} ${boot.gpu}\n${stamp()} ${boot.weights}`);
if (boot.error || !/Loaded/.test(boot.weights)) {
  console.error(`the page did not load the model: ${boot.error ?? boot.weights}`);
  await browser.close();
  process.exit(1);
}

await page.evaluate((views) => {
  // A textured 504x378 synthetic photo (shifted per view), made on a canvas.
  const images = [];
  for (let v = 0; v < views; v++) {
    const c = new OffscreenCanvas(504, 378);
    const ctx = c.getContext('2d');
    const g = ctx.createLinearGradient(0, 0, 0, 378);
    g.addColorStop(0, '#8ab'); g.addColorStop(1, '#753');
    ctx.fillStyle = g; ctx.fillRect(0, 0, 504, 378);
    for (let i = 0; i < 40; i++) {
      ctx.fillStyle = `hsl(${(i * 37) % 360} 60% 50%)`;
      ctx.fillRect((i * 97 + v * 12) % 480, 150 + (i * 53) % 200, 20 + (i % 5) * 10, 20 + (i % 7) * 8);
    }
    const d = ctx.getImageData(0, 0, 504, 378);
    images.push({ name: `synthetic ${v}`, rgba: new Uint8Array(d.data.buffer), width: 504, height: 378 });
  }
  window.da3.state.images = images;
}, Number(views));

// One evaluate per frame, so each frame's numbers are printed even if a later one stalls.
for (let f = 0; f < Number(frames); f++) {
  const r = await Promise.race([
    page.evaluate(async () => {
      const t = performance.now();
      const out = await window.da3.runImages();
      return { timings: out.timings, wall: performance.now() - t, size: `${out.views} x ${out.width}x${out.height}` };
    }),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`frame ${f} took over ${frameTimeoutMs / 1000} s`)), frameTimeoutMs)),
  ]);
  console.log(`${stamp()} frame ${f} (${r.size}): ${Object.entries(r.timings).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ')}`);
}
await browser.close();
