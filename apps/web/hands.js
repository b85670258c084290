// From a frame to the model's input and from its outputs back to the frame: the same rules as the
// predict app (apps/predict/hands.py, decode.py and lagchand_edge/data/transforms.py), so that a
// page and a Python runner given the same image and box see the same crop and draw the same hands.

/** The reader's square (x0, y0, side) around a box (x, y, w, h) of both hands, which fill `fill` of it. */
export function squareCrop([x, y, w, h], fill) {
  const side = Math.max(w, h, 1) / fill;
  return [x + w / 2 - side / 2, y + h / 2 - side / 2, side];
}

/** The centred square of a frame: no box given, the hands are assumed to fill the picture. */
export function wholeFrame(width, height) {
  const side = Math.min(width, height);
  return [(width - side) / 2, (height - side) / 2, side];
}

/**
 * The square `[x0, y0, side]` of RGBA `pixels` (width x height) resampled to size x size, as RGB
 * floats in [0, 1] in `layout` ("NCHW" or "NHWC"). Bilinear with clamped edges and black outside
 * the frame, sampled at pixel centres: Pillow's affine transform, which the Python side uses.
 */
export function cropToInput(pixels, width, height, [x0, y0, side], size, layout) {
  const out = new Float32Array(3 * size * size);
  const scale = side / size;
  const plane = size * size;
  const nchw = layout === 'NCHW';
  for (let j = 0; j < size; j++) {
    const yin = scale * (j + 0.5) + y0;
    const ys = yin - 0.5;
    const y = Math.floor(ys);
    const dy = ys - y;
    const row0 = Math.min(Math.max(y, 0), height - 1) * width;
    const row1 = Math.min(Math.max(y + 1, 0), height - 1) * width;
    for (let i = 0; i < size; i++) {
      const xin = scale * (i + 0.5) + x0;
      if (xin < 0 || xin >= width || yin < 0 || yin >= height) continue;  // black outside the frame
      const xs = xin - 0.5;
      const x = Math.floor(xs);
      const dx = xs - x;
      const c0 = Math.min(Math.max(x, 0), width - 1);
      const c1 = Math.min(Math.max(x + 1, 0), width - 1);
      for (let c = 0; c < 3; c++) {
        const top = pixels[4 * (row0 + c0) + c] + (pixels[4 * (row0 + c1) + c] - pixels[4 * (row0 + c0) + c]) * dx;
        const bottom = pixels[4 * (row1 + c0) + c] + (pixels[4 * (row1 + c1) + c] - pixels[4 * (row1 + c0) + c]) * dx;
        const value = Math.trunc(top + (bottom - top) * dy);  // Pillow truncates to uint8
        out[nchw ? c * plane + j * size + i : 3 * (j * size + i) + c] = value / 255;
      }
    }
  }
  return out;
}

/**
 * One hand's points (n, 3) and weak-perspective camera (s, tx, ty) -> frame pixels (n, 2):
 * s * size * v[:2] + t * size / 2 + size / 2 in the crop, then the crop's square back onto the frame.
 */
export function toFrame(points, camera, [x0, y0, side], size) {
  const [s, tx, ty] = camera;
  const n = points.length / 3;
  const out = new Float64Array(2 * n);
  const back = side / size;
  for (let k = 0; k < n; k++) {
    out[2 * k] = (s * size * points[3 * k] + tx * size / 2 + size / 2) * back + x0;
    out[2 * k + 1] = (s * size * points[3 * k + 1] + ty * size / 2 + size / 2) * back + y0;
  }
  return out;
}

/** Unique vertex pairs (as a flat Int32Array) of a triangle mesh's faces (flat, 3 per face). */
export function meshEdges(faces) {
  const seen = new Set();
  const edges = [];
  for (let f = 0; f < faces.length; f += 3) {
    for (const [a, b] of [[faces[f], faces[f + 1]], [faces[f + 1], faces[f + 2]], [faces[f + 2], faces[f]]]) {
      const lo = Math.min(a, b);
      const hi = Math.max(a, b);
      const key = lo * 1000003 + hi;
      if (!seen.has(key)) {
        seen.add(key);
        edges.push(lo, hi);
      }
    }
  }
  return Int32Array.from(edges);
}

/** A NumPy .npy file (little-endian integer or float array) -> {shape, data}. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.slice(1, 6));
  if (bytes[0] !== 0x93 || magic !== 'NUMPY') throw new Error('not a .npy file');
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').filter((s) => s.trim()).map(Number);
  if (/True/.test(/'fortran_order':\s*(\w+)/.exec(header)?.[1] ?? '')) throw new Error('Fortran-ordered .npy is not supported');
  const kinds = {'<i8': BigInt64Array, '<i4': Int32Array, '<f4': Float32Array, '<f8': Float64Array};
  if (!(descr in kinds)) throw new Error(`.npy dtype ${descr} is not supported`);
  const raw = new kinds[descr](buffer.slice(start + headerLength));
  return {shape, data: descr === '<i8' ? Int32Array.from(raw, Number) : raw};
}
