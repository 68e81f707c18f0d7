// COCO run-length encoding in the browser: decode pycocotools' compressed "counts" strings and
// turn masks into outlined, tinted overlays. Masks are column-major runs starting with zeros.

/**
 * Decode pycocotools' compressed counts string into run lengths.
 * Each run is a LEB128-like sequence of 6-bit characters offset by 48; from the fourth run on, a
 * run is stored as the difference to the run two places before it.
 * @param {string} s
 * @returns {number[]}
 */
export function decodeCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      if (p >= s.length) throw new Error("truncated RLE counts string");
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1;
      k += 1;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/**
 * Decode a COCO RLE {size: [h, w], counts: string} into a row-major Uint8Array of 0/1.
 * @returns {{width: number, height: number, data: Uint8Array, bbox: number[]}}
 *   bbox is [x0, y0, x1, y1] inclusive pixel bounds, or null for an empty mask.
 */
export function decodeRle(rle) {
  const [h, w] = rle.size;
  const runs = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  const data = new Uint8Array(w * h);
  let i = 0;
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let r = 0; r < runs.length; r += 1) {
    const n = runs[r];
    if (r % 2 === 1 && n > 0) {
      // Ones from column-major index i to i + n - 1.
      for (let j = i; j < i + n; j += 1) {
        const x = Math.floor(j / h);
        const y = j - x * h;
        data[y * w + x] = 1;
      }
      const xa = Math.floor(i / h);
      const xb = Math.floor((i + n - 1) / h);
      if (xa < x0) x0 = xa;
      if (xb > x1) x1 = xb;
      if (xb > xa) {
        y0 = 0;
        y1 = h - 1;
      } else {
        const ya = i - xa * h;
        const yb = i + n - 1 - xb * h;
        if (ya < y0) y0 = ya;
        if (yb > y1) y1 = yb;
      }
    }
    i += n;
  }
  if (i !== w * h) throw new Error(`RLE covers ${i} pixels, expected ${w * h}`);
  return { width: w, height: h, data, bbox: x1 < 0 ? null : [x0, y0, x1, y1] };
}

/**
 * Mask pixels within `t` pixels (square neighbourhood) of the background: the inner outline.
 * Computed on the mask's bounding box only. Pixels outside the image count as background.
 * @returns {Uint8Array} row-major over the bbox region [x0..x1] x [y0..y1].
 */
function innerOutline(mask, t) {
  const { width: w, height: h, data, bbox } = mask;
  const [x0, y0, x1, y1] = bbox;
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  // Horizontal pass: does the window [x - t, x + t] of this row contain background?
  const horiz = new Uint8Array(bw * bh);
  const prefix = new Int32Array(bw + 2 * t + 1);
  for (let yy = 0; yy < bh; yy += 1) {
    const y = y0 + yy;
    prefix[0] = 0;
    for (let k = 0; k < bw + 2 * t; k += 1) {
      const x = x0 - t + k;
      const bg = x < 0 || x >= w || !data[y * w + x] ? 1 : 0;
      prefix[k + 1] = prefix[k] + bg;
    }
    for (let xx = 0; xx < bw; xx += 1) {
      horiz[yy * bw + xx] = prefix[xx + 2 * t + 1] - prefix[xx] > 0 ? 1 : 0;
    }
  }
  // Vertical pass over the horizontal result (rows outside the image count as background).
  const out = new Uint8Array(bw * bh);
  const col = new Int32Array(bh + 2 * t + 1);
  for (let xx = 0; xx < bw; xx += 1) {
    col[0] = 0;
    for (let k = 0; k < bh + 2 * t; k += 1) {
      const yy = k - t;
      const y = y0 + yy;
      let bg;
      if (y < 0 || y >= h) bg = 1;
      else if (yy < 0 || yy >= bh) bg = 1; // outside the bbox is background by definition
      else bg = horiz[yy * bw + xx];
      col[k + 1] = col[k] + bg;
    }
    for (let yy = 0; yy < bh; yy += 1) {
      const inside = data[(y0 + yy) * w + x0 + xx];
      out[yy * bw + xx] = inside && col[yy + 2 * t + 1] - col[yy] > 0 ? 1 : 0;
    }
  }
  return out;
}

/**
 * Render a decoded mask as a small canvas covering its bounding box: a translucent fill and an
 * opaque outline `thickness` image pixels wide, both in `rgb` ([r, g, b], 0..255).
 * @returns {{canvas: HTMLCanvasElement, x: number, y: number} | null} null for an empty mask.
 */
export function renderMask(mask, rgb, { fillAlpha = 0.3, thickness = 2, dashed = false } = {}) {
  if (!mask.bbox) return null;
  const [x0, y0, x1, y1] = mask.bbox;
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  const edge = innerOutline(mask, Math.max(1, thickness));
  const canvas = document.createElement("canvas");
  canvas.width = bw;
  canvas.height = bh;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(bw, bh);
  const fill = Math.round(255 * fillAlpha);
  const period = Math.max(4, 4 * thickness);
  for (let yy = 0; yy < bh; yy += 1) {
    const row = (y0 + yy) * mask.width + x0;
    for (let xx = 0; xx < bw; xx += 1) {
      if (!mask.data[row + xx]) continue;
      const o = 4 * (yy * bw + xx);
      img.data[o] = rgb[0];
      img.data[o + 1] = rgb[1];
      img.data[o + 2] = rgb[2];
      let alpha = fill;
      if (edge[yy * bw + xx]) {
        alpha = dashed && Math.floor((xx + yy) / period) % 2 ? fill : 255;
      }
      img.data[o + 3] = alpha;
    }
  }
  ctx.putImageData(img, 0, 0);
  return { canvas, x: x0, y: y0 };
}

/** Distinct colour for an integer id (golden-angle hues), as [r, g, b]. */
export function colourFor(id) {
  const hue = (id * 137.508) % 360;
  return hslToRgb(hue / 360, 0.85, 0.55);
}

export function rgbCss(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

function hslToRgb(h, s, l) {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => {
    const k = (n + h * 12) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}
