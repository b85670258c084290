// Finding both hands with MediaPipe's palm detector (opt-in: `serve --detect`), the rules of
// apps/predict/detector.py in the browser: SSD anchors, sigmoid scores, weighted non-maximum
// suppression, each palm grown into a hand box turned by its wrist -> middle-MCP keypoints, the two
// best hands joined into one box, and on video a tracker that smooths the box and keeps the last
// one when no palm is found. The constants come from the Python module through config.json.

import {loadAndCompile, Tensor} from '@litertjs/core';
import {squareCrop} from './hands.js';

function anchorCentres({input, strides}) {
  const centres = [];
  for (const [stride, layers] of strides) {
    const grid = input / stride;
    for (let y = 0; y < grid; y++) {
      for (let x = 0; x < grid; x++) {
        for (let k = 0; k < 2 * layers; k++) centres.push([(x + 0.5) / grid, (y + 0.5) / grid]);
      }
    }
  }
  return centres;
}

const area = (b) => Math.max(b[2] - b[0], 0) * Math.max(b[3] - b[1], 0);

function iou(a, b) {
  const inter = Math.max(Math.min(a[2], b[2]) - Math.max(a[0], b[0]), 0) * Math.max(Math.min(a[3], b[3]) - Math.max(a[1], b[1]), 0);
  return inter / Math.max(area(a) + area(b) - inter, 1e-12);
}

const BITS = 22;  // Pillow's fixed-point precision for 8-bit resampling

/**
 * Pillow's bilinear resampling of one axis, `size` -> `out` pixels: for each output pixel the first
 * input pixel and the weights of a triangle filter widened by the reduction (antialiased), in
 * 22-bit fixed point as Pillow rounds them. Bit-exact, because the palm model's scores turn on it.
 */
function coefficients(size, out) {
  const scale = size / out;
  const filterScale = Math.max(scale, 1);
  const taps = Math.ceil(filterScale) * 2 + 1;
  const first = new Int32Array(out);
  const weights = new Int32Array(out * taps);
  for (let o = 0; o < out; o++) {
    const centre = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(centre - filterScale + 0.5), 0);
    const hi = Math.min(Math.trunc(centre + filterScale + 0.5), size);
    const k = [];
    for (let i = lo; i < hi; i++) k.push(Math.max(0, 1 - Math.abs((i - centre + 0.5) / filterScale)));
    const total = k.reduce((sum, v) => sum + v, 0);
    first[o] = lo;
    k.forEach((v, j) => { weights[o * taps + j] = Math.trunc(0.5 + (total ? v / total : 0) * (1 << BITS)); });
  }
  return {first, weights, taps};
}

const toByte = (sum) => Math.min(255, Math.max(0, Math.floor(sum / (1 << BITS))));

export class PalmFinder {
  constructor(model, constants) {
    this.model = model;
    this.c = constants;
    this.centres = anchorCentres(constants);
    this.last = null;
  }

  static async open(url, constants) {
    return new PalmFinder(await loadAndCompile(url, {accelerator: 'wasm'}), constants);
  }

  reset() {
    this.last = null;
  }

  /**
   * The frame as the palm model's input: letterboxed in black into a square (pasted at whole pixels)
   * and resized to n x n as Pillow does, horizontally then vertically through 8-bit rows, RGB in [0, 1].
   */
  letterbox(pixels, width, height) {
    const n = this.c.input;
    const side = Math.max(width, height);
    const left = Math.trunc((side - width) / 2);
    const top = Math.trunc((side - height) / 2);
    const key = `${side}`;
    if (this.coefficientsFor?.key !== key) this.coefficientsFor = {key, ...coefficients(side, n)};
    const {first, weights, taps} = this.coefficientsFor;
    const rows = new Uint8Array(side * n * 3);  // after the horizontal pass; the letterbox's bands stay black
    for (let y = 0; y < height; y++) {
      for (let o = 0; o < n; o++) {
        for (let c = 0; c < 3; c++) {
          let sum = 1 << (BITS - 1);
          for (let j = 0; j < taps; j++) {
            const x = first[o] + j - left;
            if (x >= 0 && x < width) sum += pixels[4 * (y * width + x) + c] * weights[o * taps + j];
          }
          rows[3 * ((y + top) * n + o) + c] = toByte(sum);
        }
      }
    }
    const input = new Float32Array(n * n * 3);
    for (let o = 0; o < n; o++) {
      for (let x = 0; x < n; x++) {
        for (let c = 0; c < 3; c++) {
          let sum = 1 << (BITS - 1);
          for (let j = 0; j < taps; j++) {
            const row = first[o] + j;
            if (row < side) sum += rows[3 * (row * n + x) + c] * weights[o * taps + j];
          }
          input[3 * (o * n + x) + c] = toByte(sum) / 255;
        }
      }
    }
    return input;
  }

  /** Palms as {score, box: [x0, y0, x1, y1], keypoints: [[x, y] x 7]} in frame pixels. */
  async palms(pixels, width, height) {
    const n = this.c.input;
    const side = Math.max(width, height);
    const pad = [(side - width) / 2, (side - height) / 2];
    const input = this.letterbox(pixels, width, height);
    const tensor = new Tensor(input, [1, n, n, 3]);
    const outputs = await this.model.run(tensor);
    tensor.delete();
    const [boxes, scores] = await Promise.all(outputs.map((t) => t.data()));
    outputs.forEach((t) => t.delete());
    const [raw, logits] = boxes.length > scores.length ? [boxes, scores] : [scores, boxes];
    const found = [];
    for (let a = 0; a < this.centres.length; a++) {
      const score = 1 / (1 + Math.exp(-Math.max(-100, Math.min(100, logits[a]))));
      if (score < this.c.min_score) continue;
      const r = raw.subarray(18 * a, 18 * a + 18);
      const [cx, cy] = this.centres[a];
      const x = r[0] / n + cx;
      const y = r[1] / n + cy;
      const box = [x - r[2] / n / 2, y - r[3] / n / 2, x + r[2] / n / 2, y + r[3] / n / 2];
      const keypoints = Array.from({length: 7}, (_, k) => [r[4 + 2 * k] / n + cx, r[5 + 2 * k] / n + cy]);
      found.push({score, box, keypoints});
    }
    return this.weightedNms(found).map(({score, box, keypoints}) => ({
      score,
      box: box.map((v, i) => v * side - pad[i % 2]),
      keypoints: keypoints.map(([kx, ky]) => [kx * side - pad[0], ky * side - pad[1]]),
    }));
  }

  /** MediaPipe's weighted NMS: each cluster (IoU > nms_iou with its best) becomes the score-weighted mean of its members. */
  weightedNms(candidates) {
    let order = candidates.sort((a, b) => b.score - a.score);
    const kept = [];
    while (order.length) {
      const best = order[0];
      const cluster = order.filter((c) => iou(best.box, c.box) > this.c.nms_iou);
      const total = cluster.reduce((sum, c) => sum + c.score, 0);
      const mean = (get) => get(cluster[0]).map((_, i) => cluster.reduce((sum, c) => sum + get(c)[i] * c.score / total, 0));
      const keypoints = best.keypoints.map((_, k) => mean((c) => c.keypoints[k]));
      kept.push({score: best.score, box: mean((c) => c.box), keypoints});
      order = order.filter((c) => !cluster.includes(c));
    }
    return kept;
  }

  /** A palm's hand bounds: a square of hand_scale palm sizes turned by the palm, moved hand_shift towards the fingers. */
  handBox({box, keypoints}) {
    const size = Math.max(box[2] - box[0], box[3] - box[1]);
    let up = [keypoints[this.c.middle_mcp][0] - keypoints[this.c.wrist][0], keypoints[this.c.middle_mcp][1] - keypoints[this.c.wrist][1]];
    const norm = Math.max(Math.hypot(up[0], up[1]), 1e-9);
    up = [up[0] / norm, up[1] / norm];
    const centre = [(box[0] + box[2]) / 2 + up[0] * this.c.hand_shift * size, (box[1] + box[3]) / 2 + up[1] * this.c.hand_shift * size];
    const half = this.c.hand_scale * size / 2 * (Math.abs(up[0]) + Math.abs(up[1]));
    return [centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half];
  }

  /** The crop square around the two best hands; on video smoothed and kept through frames without a palm. */
  async square(pixels, width, height, track, fill) {
    const palms = await this.palms(pixels, width, height);
    if (!palms.length) return track ? this.last : null;
    const hands = palms.slice(0, 2).map((p) => this.handBox(p));
    const lo = [Math.min(...hands.map((b) => b[0])), Math.min(...hands.map((b) => b[1]))];
    const hi = [Math.max(...hands.map((b) => b[2])), Math.max(...hands.map((b) => b[3]))];
    let square = squareCrop([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], fill);
    if (track && this.last) square = square.map((v, i) => this.c.smoothing * v + (1 - this.c.smoothing) * this.last[i]);
    this.last = track ? square : null;
    return square;
  }
}
