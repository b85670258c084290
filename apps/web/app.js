// The LAGCHand page: a LiteRT artifact run in the browser by LiteRT.js on a photo, a video or the
// webcam. Each frame goes through the predict app's three stages (find the two-hand crop, infer,
// draw), each timed. `serve` provides config.json (the toolkit's drawing and hand-finding
// constants), the artifact under artifact/ and LiteRT.js under vendor/.
// Tests and scripts drive the page through `window.lagchand` (see the end of this file).

import {loadLiteRt, loadAndCompile, Tensor, isWebGPUSupported} from '@litertjs/core';
import {squareCrop, wholeFrame, cropToInput, toFrame, meshEdges, parseNpy} from './hands.js';
import {PalmFinder} from './palm.js';

const OUTPUTS = ['vertices', 'joints', 'camera'];
const $ = (id) => document.getElementById(id);
const canvas = $('view');
const context = canvas.getContext('2d');
const scratch = new OffscreenCanvas(1, 1).getContext('2d', {willReadFrequently: true});
const state = {config: null, manifest: null, model: null, layout: 'NCHW', size: 256, edges: null, palm: null,
               box: null, source: null, frame: null, loop: 0, timings: {}, last: null, drawing: null};

class PageError extends Error {}

/** One clear message, on the page and on the canvas (never a blank canvas). */
function showMessage(text, kind = 'error') {
  const banner = $('message');
  banner.textContent = text;
  banner.className = kind;
  banner.hidden = !text;
  if (kind === 'error' && text) {
    window.lagchand.error = text;
    if (!state.frame) paintNotice(text);
  }
}

function paintNotice(text) {
  canvas.width = 640;
  canvas.height = 360;
  fitCanvas();
  context.fillStyle = '#222';
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = '#eee';
  context.font = '16px system-ui, sans-serif';
  const words = text.split(' ');
  let line = '';
  let y = 60;
  for (const word of words) {
    if (context.measureText(line + word).width > canvas.width - 60) {
      context.fillText(line, 30, y);
      line = '';
      y += 24;
    }
    line += word + ' ';
  }
  context.fillText(line, 30, y);
}

async function fetchOrFail(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new PageError(`Cannot load ${what} (${url}): ${error.message}`);
  }
  if (!response.ok) throw new PageError(`Cannot load ${what} (${url}): HTTP ${response.status}`);
  return response;
}

/** The manifest must describe a LAGCHand LiteRT artifact with the outputs this page draws. */
function checkManifest(manifest) {
  const problem = (why) => new PageError(`This artifact is not a LAGCHand LiteRT model: ${why}. Convert one with ` +
                                         '`lagchand-edge convert --target tflite` and serve its folder.');
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) throw problem('manifest.json is not a JSON object');
  if (manifest.target !== 'tflite') throw problem(`its manifest names the target ${JSON.stringify(manifest.target)}, not "tflite"`);
  const input = Array.isArray(manifest.inputs) ? manifest.inputs[0] : null;
  if (!input || input.name !== 'image' || !Array.isArray(input.shape) || input.shape.length !== 4) throw problem('its manifest has no 4-D "image" input');
  const names = Array.isArray(manifest.outputs) ? manifest.outputs.map((o) => o.name) : [];
  const missing = OUTPUTS.filter((name) => !names.includes(name));
  if (missing.length) throw problem(`its manifest has no ${missing.join(', ')} output`);
  return input;
}

function checkModelInputs(model, input) {
  const details = model.getInputDetails();
  const shape = details.length === 1 ? Array.from(details[0].shape) : null;
  if (!shape || shape.join(',') !== input.shape.join(',')) {
    throw new PageError(`The model file does not match its manifest: input ${details.map((d) => `${d.name} [${Array.from(d.shape)}]`).join(', ')}` +
                        ` against the manifest's image [${input.shape}]`);
  }
  if (details[0].dtype !== 'float32') throw new PageError(`The model's input is ${details[0].dtype}; this page feeds float32 (as convert writes)`);
  const outputs = model.getOutputDetails().map((d) => d.name);
  const missing = OUTPUTS.filter((name) => !outputs.includes(name));
  if (missing.length) throw new PageError(`The model file has no output named ${missing.join(', ')} (outputs: ${outputs.join(', ')})`);
}

async function start() {
  const params = new URLSearchParams(location.search);
  window.lagchand.status = 'loading';
  showMessage('Loading the model…', 'info');
  state.config = await (await fetchOrFail('config.json', 'the page configuration')).json();
  const base = params.get('artifact') ?? state.config.artifact;
  let manifest;
  try {
    manifest = await (await fetchOrFail(`${base}manifest.json`, 'the artifact\'s manifest.json')).json();
  } catch (error) {
    if (error instanceof PageError) throw error;
    throw new PageError(`The artifact's manifest.json is not valid JSON (${error.message})`);
  }
  const input = checkManifest(manifest);
  state.manifest = manifest;
  state.layout = String(input.layout).startsWith('NHWC') ? 'NHWC' : 'NCHW';
  state.size = state.layout === 'NHWC' ? input.shape[1] : input.shape[2];

  const wantGpu = params.get('backend') === 'webgpu';
  if (wantGpu && !isWebGPUSupported()) showMessage('WebGPU is not available in this browser; running on WASM (CPU).', 'info');
  const accelerator = wantGpu && isWebGPUSupported() ? 'webgpu' : 'wasm';
  const offered = self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 8)) : 1;  // threads need isolation
  const threads = Math.max(1, Math.min(Number(params.get('threads')) || offered, offered));
  await loadLiteRt(state.config.wasm, threads > 1 ? {threads: true} : {});
  const bytes = new Uint8Array(await (await fetchOrFail(`${base}${manifest.file}`, 'the model file')).arrayBuffer());
  try {
    state.model = await loadAndCompile(bytes, {accelerator, cpuOptions: {numThreads: threads}});
  } catch (error) {
    throw new PageError(`LiteRT.js cannot load ${manifest.file}: ${error.message}`);
  }
  checkModelInputs(state.model, input);
  state.backend = accelerator === 'webgpu' ? 'WebGPU' : `WASM (CPU, ${threads} thread${threads > 1 ? 's' : ''})`;
  $('backend').textContent = state.backend;
  $('model').textContent = `${manifest.precision} · ${manifest.source?.config ?? 'LAGCHand'} · ${(manifest.size_bytes / 1e6).toFixed(1)} MB`;

  try {
    const faces = parseNpy(await (await fetchOrFail(`${base}hand_faces.npy`, 'the hand mesh')).arrayBuffer());
    state.edges = meshEdges(faces.data.subarray(faces.data.length / 2));  // both hands share one topology up to mirroring
  } catch (error) {
    state.edges = null;  // skeletons only
    showMessage(`No mesh wireframe: ${error.message}`, 'info');
  }
  if (state.config.detector) {
    $('detect').disabled = false;
    $('detect-note').textContent = '';
  }
  window.lagchand.status = 'ready';
  window.lagchand.backend = state.backend;
  if ($('message').className === 'info' && $('message').textContent.startsWith('Loading')) showMessage('');
  paintNotice('Open a photo or a video, drop one here, or start the webcam. Drag on the picture to draw a box around both hands.');
}

// ---- finding the crop --------------------------------------------------------------------------

async function findSquare(frame) {
  const detect = $('detect').checked && state.config.detector;
  $('box').textContent = state.box ? `box ${state.box.map(Math.round).join(', ')}` : detect ? 'palm detector' : 'whole frame';
  if (state.box) return squareCrop(state.box, state.config.crop_fill);
  if (detect) {
    if (!state.palm) state.palm = await PalmFinder.open(state.config.detector, state.config.palm);
    return state.palm.square(frame.pixels, frame.width, frame.height, state.source?.kind !== 'photo', state.config.crop_fill);
  }
  return wholeFrame(frame.width, frame.height);
}

// ---- one frame -----------------------------------------------------------------------------------

function grab(image, width, height) {
  scratch.canvas.width = width;
  scratch.canvas.height = height;
  scratch.drawImage(image, 0, 0);
  return {image, width, height, pixels: scratch.getImageData(0, 0, width, height, {colorSpace: 'srgb'}).data};
}

async function infer(frame, square) {
  const name = state.manifest.inputs[0].name;
  const values = cropToInput(frame.pixels, frame.width, frame.height, square, state.size, state.layout);
  window.lagchand.lastInput = values;
  const tensor = new Tensor(values, state.manifest.inputs[0].shape);
  let results;
  try {
    results = await state.model.run({[name]: tensor});
  } finally {
    tensor.delete();
  }
  const out = {};
  for (const key of OUTPUTS) {
    out[key] = Float32Array.from(await results[key].data());
  }
  for (const tensor of Object.values(results)) tensor.delete();
  const hands = {};
  state.config.hand_names.forEach((hand, h) => {
    const joints = out.joints.subarray(h * out.joints.length / 2, (h + 1) * out.joints.length / 2);
    const vertices = out.vertices.subarray(h * out.vertices.length / 2, (h + 1) * out.vertices.length / 2);
    const camera = out.camera.subarray(3 * h, 3 * h + 3);
    hands[hand] = {joints_image: toFrame(joints, camera, square, state.size), vertices_image: toFrame(vertices, camera, square, state.size),
                   joints_3d: Array.from(joints), camera: Array.from(camera)};
  });
  return hands;
}

/** Show the canvas as large as the window allows (a small photo is scaled up, a large one down). */
function fitCanvas() {
  const scale = Math.min((document.body.clientWidth - 32) / canvas.width, 0.75 * window.innerHeight / canvas.height);
  canvas.style.width = `${Math.round(canvas.width * scale)}px`;
  canvas.style.height = `${Math.round(canvas.height * scale)}px`;
}

function draw(frame, square, hands) {
  if (canvas.width !== frame.width || canvas.height !== frame.height) {
    canvas.width = frame.width;
    canvas.height = frame.height;
    fitCanvas();
  }
  context.drawImage(frame.image, 0, 0);
  const width = Math.max(1, Math.round(Math.min(frame.width, frame.height) / 240));
  const {hand_colours: colours, skeleton, wire_alpha: alpha} = state.config;
  for (const [hand, points] of Object.entries(hands)) {
    const rgb = `rgb(${colours[hand].join(',')})`;
    if (state.edges && $('wireframe').checked) {
      context.globalAlpha = alpha;
      context.strokeStyle = rgb;
      context.lineWidth = 1;
      context.beginPath();
      const v = points.vertices_image;
      for (let e = 0; e < state.edges.length; e += 2) {
        context.moveTo(v[2 * state.edges[e]], v[2 * state.edges[e] + 1]);
        context.lineTo(v[2 * state.edges[e + 1]], v[2 * state.edges[e + 1] + 1]);
      }
      context.stroke();
      context.globalAlpha = 1;
    }
    const uv = points.joints_image;
    for (const [colour, extra] of [['#fff', 2], [rgb, 0]]) {
      context.strokeStyle = colour;
      context.lineWidth = width + extra;
      context.beginPath();
      for (const [a, b] of skeleton) {
        context.moveTo(uv[2 * a], uv[2 * a + 1]);
        context.lineTo(uv[2 * b], uv[2 * b + 1]);
      }
      context.stroke();
    }
    context.fillStyle = rgb;
    context.strokeStyle = '#fff';
    context.lineWidth = 1;
    for (let k = 0; k < uv.length; k += 2) {
      context.beginPath();
      context.arc(uv[k], uv[k + 1], width + 1, 0, 2 * Math.PI);
      context.fill();
      context.stroke();
    }
  }
  context.strokeStyle = '#ff0';
  context.lineWidth = 1;
  context.strokeRect(square[0], square[1], square[2], square[2]);
  if (state.drawing) {
    const [x, y, w, h] = state.drawing;
    context.setLineDash([6, 4]);
    context.strokeRect(x, y, w, h);
    context.setLineDash([]);
  }
}

const smooth = (old, value) => (old === undefined ? value : 0.8 * old + 0.2 * value);

/** The three timed stages on one frame; the result is kept on window.lagchand.last. */
async function processFrame(frame) {
  state.frame = frame;
  const t0 = performance.now();
  const square = await findSquare(frame);
  const t1 = performance.now();
  if (!square) {
    context.drawImage(frame.image, 0, 0);
    showMessage('No hands found in this frame (draw a box around both hands, or turn the detector off).', 'info');
    return null;
  }
  const hands = await infer(frame, square);
  const t2 = performance.now();
  draw(frame, square, hands);
  const t3 = performance.now();
  const timings = {find: t1 - t0, infer: t2 - t1, draw: t3 - t2};
  for (const [stage, ms] of Object.entries(timings)) state.timings[stage] = smooth(state.timings[stage], ms);
  const total = state.timings.find + state.timings.infer + state.timings.draw;
  $('fps').textContent = `${(1000 / total).toFixed(1)} FPS — find ${state.timings.find.toFixed(1)} ms · ` +
                         `inference ${state.timings.infer.toFixed(1)} ms · drawing ${state.timings.draw.toFixed(1)} ms`;
  const last = {crop_square: square, timings_ms: timings, backend: state.backend};
  for (const [hand, points] of Object.entries(hands)) {
    last[hand] = {joints_image: Array.from(points.joints_image), joints_3d: points.joints_3d, camera: points.camera};
  }
  window.lagchand.last = last;
  window.lagchand.frames = (window.lagchand.frames ?? 0) + 1;
  return last;
}

// ---- sources ---------------------------------------------------------------------------------------

function stopSource() {
  state.loop += 1;  // ends any running video or camera loop
  if (state.source?.stream) state.source.stream.getTracks().forEach((track) => track.stop());
  if (state.source?.url) URL.revokeObjectURL(state.source.url);
  if (state.palm) state.palm.reset();
  state.source = null;
}

async function runPhoto(bitmap, name) {
  stopSource();
  state.source = {kind: 'photo', name, bitmap};
  $('source').textContent = `${name} (${bitmap.width}x${bitmap.height})`;
  showMessage('');
  return processFrame(grab(bitmap, bitmap.width, bitmap.height));
}

function runVideo(video, kind, extra = {}) {
  stopSource();
  state.source = {kind, video, ...extra};
  const loop = state.loop;
  const step = async () => {
    if (loop !== state.loop) return;
    if (video.readyState >= 2 && video.videoWidth) {
      try {
        await processFrame(grab(video, video.videoWidth, video.videoHeight));
      } catch (error) {
        fail(error);
        return;
      }
    }
    if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(step);
    else requestAnimationFrame(step);
  };
  step();
}

/** Whether a source can run now; if not, says why (the model is loading, or failed to load). */
function modelReady() {
  if (state.model) return true;
  const failed = window.lagchand.status === 'failed';
  showMessage(failed ? window.lagchand.error : 'The model is still loading; try again in a moment.', failed ? 'error' : 'info');
  return false;
}

async function openFile(file) {
  if (!modelReady()) return;
  if (file.type.startsWith('video/')) {
    const url = URL.createObjectURL(file);
    const video = Object.assign(document.createElement('video'), {src: url, muted: true, loop: true, playsInline: true});
    video.onerror = () => {
      stopSource();
      state.frame = null;
      showMessage(`${file.name}: this browser cannot decode the video (${video.error?.message || 'unsupported format or codec'}). ` +
                  'Try an MP4 (H.264) or WebM file.');
    };
    try {
      await video.play();
    } catch (error) {
      if (!video.error) showMessage(`${file.name}: cannot play the video (${error.message})`);
      return;
    }
    $('source').textContent = `${file.name} (video)`;
    showMessage('');
    runVideo(video, 'video', {url});
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  } catch {
    stopSource();
    state.frame = null;
    showMessage(`${file.name}: not an image or a video this browser can decode (${file.type || 'unknown type'}).`);
    return;
  }
  await runPhoto(bitmap, file.name);
}

async function startCamera() {
  if (!modelReady()) return;
  if (!navigator.mediaDevices?.getUserMedia) {
    showMessage('This browser gives no camera here (a camera needs https or localhost).');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}});
  } catch (error) {
    const why = {NotAllowedError: 'camera access was denied; allow it in the site settings and try again',
                 NotFoundError: 'no camera was found', NotReadableError: 'the camera is in use by another program'}[error.name];
    stopSource();
    state.frame = null;
    showMessage(`Webcam: ${why ?? error.message}. A photo or a video works too.`);
    return;
  }
  const video = Object.assign(document.createElement('video'), {srcObject: stream, muted: true, playsInline: true});
  await video.play();
  $('source').textContent = 'webcam';
  showMessage('');
  runVideo(video, 'camera', {stream});
}

function fail(error) {
  console.error(error);
  window.lagchand.status = 'failed';
  showMessage(error instanceof PageError ? error.message : `Something went wrong: ${error.message}`);
}

// ---- drawing a box ---------------------------------------------------------------------------------

function framePoint(event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
}

canvas.addEventListener('pointerdown', (event) => {
  if (!state.frame) return;
  const start = framePoint(event);
  canvas.setPointerCapture(event.pointerId);
  const move = (e) => {
    const [x, y] = framePoint(e);
    state.drawing = [Math.min(start[0], x), Math.min(start[1], y), Math.abs(x - start[0]), Math.abs(y - start[1])];
    if (state.source?.kind === 'photo') processFrame(state.frame).catch(fail);
  };
  const up = () => {
    canvas.removeEventListener('pointermove', move);
    canvas.removeEventListener('pointerup', up);
    if (state.drawing && state.drawing[2] > 8 && state.drawing[3] > 8) state.box = state.drawing.map(Math.round);
    state.drawing = null;
    if (state.source?.kind === 'photo') processFrame(state.frame).catch(fail);
  };
  canvas.addEventListener('pointermove', move);
  canvas.addEventListener('pointerup', up);
});

// ---- wiring ----------------------------------------------------------------------------------------

$('file').addEventListener('change', (event) => event.target.files[0] && openFile(event.target.files[0]).catch(fail));
$('camera').addEventListener('click', () => startCamera().catch(fail));
$('clear-box').addEventListener('click', () => {
  state.box = null;
  if (state.source?.kind === 'photo') processFrame(state.frame).catch(fail);
});
for (const id of ['wireframe', 'detect']) {
  $(id).addEventListener('change', () => state.source?.kind === 'photo' && processFrame(state.frame).catch(fail));
}
window.addEventListener('resize', fitCanvas);
document.addEventListener('dragover', (event) => event.preventDefault());
document.addEventListener('drop', (event) => {
  event.preventDefault();
  if (event.dataTransfer.files[0]) openFile(event.dataTransfer.files[0]).catch(fail);
});

/** For tests and scripts: run the model on an image URL with an optional box (x, y, w, h); resolves to the result
 *  ({crop_square, timings_ms, backend, left/right: {joints_image (21 x, y pairs, frame pixels), joints_3d, camera}}). */
async function runImage(url, box = null, name = url.startsWith('data:') ? 'image' : url.split('/').pop()) {
  const response = await fetchOrFail(url, 'the image');
  const bitmap = await createImageBitmap(await response.blob(), {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  state.box = box;
  return runPhoto(bitmap, name);
}

window.lagchand = {status: 'loading', runImage, openFile, startCamera};
start().catch(fail);
