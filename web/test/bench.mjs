// Time per frame of the demo page in headless Chromium (WebGPU; SwiftShader on a machine
// without a GPU, i.e. a CPU rasterizer). Loads a manifest, feeds a synthetic 504x378 photo
// (1 view, or VIEWS) and prints each frame's stage timings; the first frame includes shader
// compilation.
//
// Usage: node web/test/bench.mjs http://127.0.0.1:PORT/ MANIFEST_PATH [FRAMES=3] [VIEWS=1]
import { chromium } from 'playwright-core';

const [base, manifest, frames = '3', views = '1'] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
});
const page = await browser.newPage();
page.on('console', (m) => { if (m.type() === 'error') console.log(`console: ${m.text().slice(0, 200)}`); });
await page.goto(`${base}index.html?manifest=${encodeURIComponent(manifest)}&res=504`);
await page.waitForFunction(() => window.da3?.ready, null, { timeout: 600_000 });
console.log(await page.evaluate(() => `${document.getElementById('gpu-status').textContent}\n${document.getElementById('weights-status').textContent}`));
const results = await page.evaluate(async ({ frames, views }) => {
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
  const out = [];
  for (let f = 0; f < frames; f++) out.push((await window.da3.runImages()).timings);
  return out;
}, { frames: Number(frames), views: Number(views) });
results.forEach((t, i) => console.log(`frame ${i}: ${Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ')}`));
await browser.close();
