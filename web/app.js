// The demo page: WebGPU check, weights (URL manifest or local files), photos (drop, picker or
// webcam), inference through the da3-web WASM module, and the results (colourized depth,
// confidence, 3D point cloud with camera frustums, stage timings).
//
// URL parameters: ?manifest=URL loads weights at start, ?res=N sets the processing resolution.
// window.da3 exposes the state and entry points (used by web/test/browser.test.mjs).
import { loadFromManifestUrl, loadFromFiles, clearCache } from './weights.js';
import { SceneViewer } from './viewer.js';

let Model = null; // the wasm class, once loaded
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { model: null, images: [], output: null, scene: null, viewer: null, adapter: '', busy: false };
const da3 = { ready: false, error: null, state, loadManifest, runImages, runNormalized, lastResult: null };
window.da3 = da3;

function setStatus(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function fail(id, err) {
  console.error(err);
  setStatus(id, String(err?.message ?? err), true);
}

const ms = (x) => `${x.toFixed(1)} ms`;

async function boot() {
  if (params.get('res')) $('process-res').value = params.get('res');
  if (!navigator.gpu) return noWebgpu('navigator.gpu is missing');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return noWebgpu('navigator.gpu.requestAdapter() returned no adapter');
  // Loaded only now: a browser without WebGPU does not download the wasm.
  const wasm = await import('./pkg/da3_web.js');
  await wasm.default();
  Model = wasm.Model;
  const wgpuInfo = await wasm.initWebgpu();
  const i = adapter.info ?? {};
  state.adapter = [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') || wgpuInfo;
  const cpu = /swiftshader|llvmpipe|lavapipe|software|cpu/i.test(`${state.adapter} ${wgpuInfo}`);
  setStatus('gpu-status', `WebGPU adapter: ${state.adapter}${cpu ? ' — a CPU rasterizer, expect slow frames' : ''}`);
  state.viewer = new SceneViewer($('viewer'));
  wireUi();
  if (params.get('manifest')) await loadManifest(params.get('manifest'));
  da3.ready = true;
}

function noWebgpu(why) {
  $('no-webgpu').hidden = false;
  setStatus('gpu-status', `No WebGPU (${why}).`, true);
  for (const b of document.querySelectorAll('button, input')) b.disabled = true;
  da3.ready = true;
  da3.error = 'no-webgpu';
}

function wireUi() {
  $('load-url').onclick = () => loadManifest($('manifest-url').value).catch(() => {});
  $('weights-files').onchange = (e) => loadLocal(e.target.files).catch(() => {});
  $('clear-cache').onclick = async () => { await clearCache(); setStatus('weights-status', 'Weight cache cleared.'); };
  $('image-files').onchange = (e) => addImages(e.target.files);
  const zone = $('drop-zone');
  zone.ondragover = (e) => { e.preventDefault(); zone.classList.add('over'); };
  zone.ondragleave = () => zone.classList.remove('over');
  zone.ondrop = (e) => { e.preventDefault(); zone.classList.remove('over'); addImages(e.dataTransfer.files); };
  $('run').onclick = () => runImages().catch(() => {});
  $('webcam').onclick = () => startWebcam().catch((e) => fail('run-status', e));
  $('snap').onclick = () => snapAndRun().catch(() => {});
  $('live').onchange = () => { if ($('live').checked) liveLoop(); };
  $('download-glb').onclick = downloadGlb;
  $('conf-pct').onchange = () => { if (state.output) showScene(); };
}

function updateRunButton() {
  $('run').disabled = !(state.model && state.images.length > 0) || state.busy;
}

// ---- weights ---------------------------------------------------------------------------

async function loadManifest(url) {
  const bar = $('weights-progress');
  try {
    setStatus('weights-status', `Fetching ${url}…`);
    const t0 = performance.now();
    const got = await loadFromManifestUrl(url, {
      onProgress: ({ loaded, total, file, cached }) => {
        bar.max = total || 1;
        bar.value = loaded;
        setStatus('weights-status', `${cached ? 'From cache' : 'Downloading'} ${file}: ${(loaded / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`);
      },
    });
    const fetchMs = performance.now() - t0;
    const how = got.downloadedFiles === 0 ? 'all from the browser cache' : `${got.downloadedFiles} downloaded, ${got.cachedFiles} from cache`;
    await buildModel(got, `${got.shards.length} shard(s), sha256 verified, ${how}, ${ms(fetchMs)}`);
  } catch (e) {
    fail('weights-status', e);
    throw e;
  }
}

async function loadLocal(files) {
  try {
    setStatus('weights-status', 'Reading local files…');
    const got = await loadFromFiles(files);
    await buildModel(got, `${got.shards.length} local file(s)`);
  } catch (e) {
    fail('weights-status', e);
    throw e;
  }
}

async function buildModel({ manifest, shards }, how) {
  setStatus('weights-status', `Uploading weights to the GPU (${how})…`);
  await new Promise((r) => setTimeout(r, 0)); // let the status paint
  state.model?.free();
  state.model = Model.load(JSON.stringify(manifest.config), shards);
  const mb = shards.reduce((s, b) => s + b.byteLength, 0) / 1e6;
  setStatus('weights-status', `Loaded ${state.model.name} (${mb.toFixed(1)} MB, ${manifest.dtype ?? 'as stored'}; ${how}; upload ${ms(state.model.loadMs)}).`);
  $('weights-progress').value = $('weights-progress').max;
  updateRunButton();
}

// ---- images ----------------------------------------------------------------------------

/** Decodes an image file or element to raw RGBA (no colour management). */
async function toRgba(source) {
  const bmp = await createImageBitmap(source, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  const data = ctx.getImageData(0, 0, bmp.width, bmp.height);
  return { rgba: new Uint8Array(data.data.buffer), width: bmp.width, height: bmp.height };
}

async function addImages(fileList) {
  const files = [...fileList].filter((f) => f.type.startsWith('image/'));
  if (files.length === 0) return fail('run-status', new Error('no image files among the dropped files'));
  state.images = [];
  $('thumbs').replaceChildren();
  for (const f of files) {
    state.images.push({ name: f.name, ...(await toRgba(f)) });
    const img = document.createElement('img');
    img.src = URL.createObjectURL(f);
    img.title = f.name;
    $('thumbs').append(img);
  }
  setStatus('run-status', `${files.length} photo(s) ready${files.length > 1 ? ' (one scene: depth + cameras)' : ''}.`);
  updateRunButton();
}

// ---- webcam ----------------------------------------------------------------------------

async function startWebcam() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  const video = $('video');
  video.srcObject = stream;
  video.hidden = false;
  $('snap').disabled = false;
  $('live').disabled = false;
}

async function snapAndRun() {
  const video = $('video');
  const canvas = new OffscreenCanvas(video.videoWidth, video.videoHeight);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
  state.images = [{ name: 'webcam', rgba: new Uint8Array(data.data.buffer), width: canvas.width, height: canvas.height }];
  await runImages();
}

async function liveLoop() {
  while ($('live').checked && !$('video').hidden) {
    if (!state.model) break;
    await snapAndRun().catch(() => { $('live').checked = false; });
  }
}

// ---- inference -------------------------------------------------------------------------

async function runImages() {
  if (!state.model) throw new Error('load weights first');
  if (state.images.length === 0) throw new Error('add photos first');
  return runWith(() => state.model.predictRgba(
    state.images.map((i) => i.rgba), Uint32Array.from(state.images.map((i) => i.width)),
    Uint32Array.from(state.images.map((i) => i.height)), Number($('process-res').value), $('ref-view').value,
  ));
}

/** Runs network-ready input ([S,3,H,W] normalized floats), e.g. a golden fixture's images. */
async function runNormalized(data, views, height, width, strategy = 'saddle_balanced') {
  return runWith(() => state.model.predictNormalized(data, views, height, width, strategy));
}

async function runWith(predict) {
  state.busy = true;
  updateRunButton();
  try {
    setStatus('run-status', 'Running…');
    const t0 = performance.now();
    const out = await predict();
    const t1 = performance.now();
    state.output?.free();
    state.output = out;
    drawMaps(out);
    const t2 = performance.now();
    const sceneMs = state.model.hasCameras ? showScene() : 0;
    const t3 = performance.now();
    const timings = {
      preprocess: out.preprocessMs, 'upload + GPU encode': out.encodeMs, 'GPU + readback': out.gpuMs,
      'depth/conf maps': t2 - t1, '3D scene': sceneMs, total: t3 - t0,
    };
    $('timings').replaceChildren(...Object.entries(timings).map(([k, v]) => {
      const tr = document.createElement('tr');
      tr.innerHTML = `<td>${k}</td><td>${ms(v)}</td>`;
      return tr;
    }));
    setStatus('run-status', `${out.views} view(s) at ${out.width}×${out.height} on ${state.adapter}.`);
    da3.lastResult = {
      views: out.views, height: out.height, width: out.width, depth: out.depth, conf: out.conf,
      extrinsics: out.extrinsics, intrinsics: out.intrinsics, timings,
    };
    return da3.lastResult;
  } catch (e) {
    fail('run-status', e);
    throw e;
  } finally {
    state.busy = false;
    updateRunButton();
  }
}

function canvasOf(rgba, w, h, caption) {
  const fig = document.createElement('figure');
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.byteLength), w, h), 0, 0);
  const cap = document.createElement('figcaption');
  cap.textContent = caption;
  fig.append(canvas, cap);
  return fig;
}

function drawMaps(out) {
  const figs = [];
  const { width: w, height: h } = out;
  for (let i = 0; i < out.views; i++) {
    const name = state.images[i]?.name ?? `view ${i}`;
    figs.push(canvasOf(out.imageRgba(i), w, h, `${name} (processed)`));
    const depth = canvasOf(out.depthRgba(i), w, h, `depth ${i} (near = red)`);
    depth.querySelector('canvas').classList.add('depth');
    figs.push(depth);
    figs.push(state.model.hasCameras ? canvasOf(out.confRgba(i), w, h, `confidence ${i} (bright = confident)`) : document.createElement('figure'));
  }
  $('maps').replaceChildren(...figs);
}

function showScene() {
  const t0 = performance.now();
  state.scene?.free();
  state.scene = state.output.scene(Number($('conf-pct').value), 300000);
  const s = state.scene;
  state.viewer.show({ positions: s.positions, colors: s.colors, frustums: s.frustums, frustumColors: s.frustumColors });
  $('download-glb').disabled = false;
  return performance.now() - t0;
}

function downloadGlb() {
  const blob = new Blob([state.scene.glb()], { type: 'model/gltf-binary' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'scene.glb';
  a.click();
}

boot().catch((e) => {
  da3.error = String(e?.message ?? e);
  da3.ready = true;
  fail('gpu-status', e);
});
