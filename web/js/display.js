// The display copies of a result, made where the full-size pixels are (the model's worker): a
// thumbnail of the X-ray (JPEG) and the mask as a tinted layer with the share of lung in each
// thumbnail pixel as its alpha (PNG), both at most THUMB_SIDE pixels a side. The page shows them
// stacked (the layer at the overlay's opacity), so the main thread never touches full-size pixels.
import * as runs from "./runs.js";

const THUMB_SIDE = 768;   // two side by side fill the results' 48rem on a 2x screen
const JPEG_QUALITY = 0.9;

/** A width x height image scaled to fit THUMB_SIDE (never enlarged). */
export function thumbSize(width, height, side = THUMB_SIDE) {
  const scale = Math.min(1, side / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** ImageData (full size) -> a JPEG Blob of its thumbnail (size: thumbSize's). */
export async function imageThumbnail(imageData, size) {
  const bitmap = await createImageBitmap(imageData, { resizeWidth: size.width, resizeHeight: size.height, resizeQuality: "high" });
  try {
    const canvas = new OffscreenCanvas(size.width, size.height);
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    return await canvas.convertToBlob({ type: "image/jpeg", quality: JPEG_QUALITY });
  } finally {
    bitmap.close();
  }
}

/** A mask (runs) -> a PNG Blob of its layer at `size`: `color` ([r, g, b]) with alpha = the share
 *  of lung pixels among the full-size pixels each thumbnail pixel covers. */
export async function maskLayer(mask, size, color) {
  const { width, height } = mask, tw = size.width, th = size.height;
  const binX = new Int32Array(width), binY = new Int32Array(height);
  const perX = new Float64Array(tw), perY = new Float64Array(th);
  for (let x = 0; x < width; x++) { binX[x] = Math.floor((x * tw) / width); perX[binX[x]]++; }
  for (let y = 0; y < height; y++) { binY[y] = Math.floor((y * th) / height); perY[binY[y]]++; }
  const lung = new Float64Array(tw * th);
  runs.forEachRun(mask, (y, x0, x1) => {
    const row = binY[y] * tw;
    for (let x = x0; x < x1; x++) lung[row + binX[x]]++;
  });
  const layer = new ImageData(tw, th);
  for (let ty = 0, i = 0; ty < th; ty++) {
    for (let tx = 0; tx < tw; tx++, i++) {
      if (!lung[i]) continue;
      layer.data.set(color, 4 * i);
      layer.data[4 * i + 3] = Math.round((255 * lung[i]) / (perX[tx] * perY[ty]));
    }
  }
  const canvas = new OffscreenCanvas(tw, th);
  canvas.getContext("2d").putImageData(layer, 0, 0);
  return canvas.convertToBlob({ type: "image/png" });
}
