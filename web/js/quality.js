// How far to trust a mask, in the browser: the same image figures, mask features, estimated
// quality and warnings as lungseg/checks.py and lungseg/quality.py, with the limits and wording
// of rules.json and the model's coefficients from metadata.json ("quality").
import { fullSizeMask } from "./postprocess.js";
import { formatG, toFixedEven } from "./rules.js";
import * as runs from "./runs.js";

const MIN_REGION = 0.001;

/** Grey-level figures of RGBA pixels on g = floor((R + G + B) / 3) (checks.image_stats), in one
 *  pass; the standard deviation from the histogram (the same sum, grouped by grey level). */
export function imageStats(rgba, width, height) {
  const n = width * height;
  const counts = new Float64Array(256);
  let sum = 0, colour = 0, steps = 0;
  for (let y = 0, i = 0; y < height; y++) {
    let previous = -1;
    for (let x = 0; x < width; x++, i++) {
      const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
      const v = Math.floor((r + g + b) / 3);
      counts[v]++; sum += v;
      colour += Math.max(r, g, b) - Math.min(r, g, b);
      if (previous >= 0) steps += Math.abs(v - previous);
      previous = v;
    }
  }
  const mean = sum / n;
  let squares = 0;
  for (let v = 0; v < 256; v++) squares += counts[v] * (v - mean) ** 2;
  const std = Math.sqrt(squares / n);
  const percentile = (q) => {   // numpy.searchsorted(cumsum(counts) / n, q)
    let cumulative = 0;
    for (let v = 0; v < 256; v++) { cumulative += counts[v]; if (cumulative / n >= q) return v; }
    return 255;
  };
  return {
    width, height, p1: percentile(0.01), p99: percentile(0.99), std, colour: colour / n,
    noise: (width > 1 ? steps / (height * (width - 1)) : 0) / (std + 1),
  };
}

/** checks.warning: {code, message} with the rules.json template filled in. */
export function warning(rules, code, fields = {}) {
  const text = rules.warnings[code].replace(/\{(\w+)\}/g, (m, key) => String(fields[key]));
  return { code, message: text };
}

/** Warnings about the X-ray itself (checks.image_warnings). */
export function imageWarnings(rules, stats) {
  const limits = rules.checks, out = [];
  if (stats.colour > limits.colour_above) out.push(warning(rules, "colour"));
  if (stats.std < limits.flat_std_below) out.push(warning(rules, "flat"));
  else if (stats.noise > limits.noise_above) out.push(warning(rules, "noise"));
  else if (stats.p1 > limits.washed_out_p1_above) out.push(warning(rules, "washed_out", { p1: stats.p1 }));
  else if (stats.p99 < limits.dark_p99_below) out.push(warning(rules, "dark", { p99: stats.p99 }));
  else if (stats.p99 - stats.p1 < limits.low_contrast_below) {
    out.push(warning(rules, "low_contrast", { p1: stats.p1, p99: stats.p99 }));
  }
  if (Math.min(stats.width, stats.height) < limits.small_side_below) {
    out.push(warning(rules, "small_image", { width: stats.width, height: stats.height, small_side: limits.small_side_below }));
  }
  return out;
}

/** Features of one prediction from its probability sums ({total, inside, undecided}) and its
 *  masks before (`raw`, with its regions `rawRegions`) and after clean-up (`mask`), all runs
 *  (quality.features_of_sums). */
export function featuresOfSums(sums, raw, rawRegions, mask) {
  const { width, height } = mask, n = width * height;
  const border = runs.borderCounts(mask);
  const lung = runs.area(mask), rawArea = runs.area(raw);
  const kept = runs.label(mask).areas.slice(1).sort((a, b) => b - a);
  return {
    soft_dice: (2 * sums.inside) / Math.max(sums.total + lung, 1),
    uncertain: sums.undecided / Math.max(lung, 1),
    confidence: lung ? sums.inside / lung : 0,
    area: lung / n,
    regions: rawRegions.areas.slice(1).filter((a) => a >= MIN_REGION * n).length,
    removed: (rawArea - runs.overlap(raw, mask)) / Math.max(rawArea, 1),
    balance: kept.length >= 2 ? kept[1] / kept[0] : 0,
    lungs: kept.length,
    edge: Math.max(border.top / width, border.bottom / width, border.left / height, border.right / height),
  };
}

/** The estimated Dice from features and the model's quality parameters (quality.estimate). */
export function estimate(feats, params) {
  if (feats.area === 0) return 0;   // an empty mask: nothing to trust
  let logit = params.intercept;
  params.features.forEach((name, i) => { logit += params.coef[i] * ((feats[name] - params.mean[i]) / params.scale[i]); });
  return 1 / (1 + Math.exp(-logit));
}

/** Whether a mask looks like two lungs of a sensible size (checks.plausible). */
export function plausible(rules, feats) {
  const [low, high] = rules.checks.area_range;
  return feats.lungs === 2 && feats.area >= low && feats.area <= high && feats.balance >= rules.checks.balance_below;
}

/**
 * Whether a doubtful input is a negative (checks.inverse_is_better): its inverse gives plausible
 * lungs whose estimated quality is higher by more than invert_gain_above; without an estimate,
 * when its own mask is not plausible lungs.
 */
export function inverseIsBetter(rules, feats, quality, inverseFeats, inverseQuality) {
  if (!plausible(rules, inverseFeats)) return false;
  if (quality == null || inverseQuality == null) return !plausible(rules, feats);
  return inverseQuality - quality > rules.checks.invert_gain_above;
}

/** Warnings about the mask (checks.mask_warnings). */
export function maskWarnings(rules, feats, quality, warnBelow) {
  const [low, high] = rules.checks.area_range, out = [];
  if (feats.lungs !== 2) out.push(warning(rules, "not_two_lungs", { regions: feats.lungs }));
  if (!(feats.area >= low && feats.area <= high)) {
    out.push(warning(rules, "lung_area", { area: toFixedEven(100 * feats.area, 1), low: formatG(100 * low), high: formatG(100 * high) }));
  }
  if (feats.lungs === 2 && feats.balance < rules.checks.balance_below) out.push(warning(rules, "unbalanced"));
  if (feats.edge > rules.checks.edge_above) out.push(warning(rules, "cut_off"));
  if (quality < warnBelow) {
    out.push(warning(rules, "low_quality", { quality: toFixedEven(quality, 3), threshold: toFixedEven(warnBelow, 3) }));
  }
  return out;
}

/** What the visible and the whole-lung outputs say of each other (quality.pair_features), from
 *  their thresholded working-size maps (Uint8Array 0/1 of one size): the share of the visible
 *  field outside the whole lung, and the natural log of the whole lung's area over the field's. */
export function pairFeatures(visible, whole) {
  let inside = 0, outside = 0, wholeArea = 0;
  for (let i = 0; i < visible.length; i++) {
    inside += visible[i];
    wholeArea += whole[i];
    if (visible[i] && !whole[i]) outside++;
  }
  return { visible_outside: outside / Math.max(inside, 1), whole_over_visible: Math.log(Math.max(wholeArea, 1) / Math.max(inside, 1)) };
}

/** Mask (runs), estimated quality and mask warnings of one probability map (Segmenter._assess):
 *  `map` a ProbabilityMap or FullMap (js/postprocess.js); `params` the output's estimator (the
 *  visible field's by default), `pair` the pairFeatures of a two-output model (or null). */
export function assess(rules, meta, map, t = meta.threshold, { params = meta.quality, pair = null } = {}) {
  const { mask, raw, rawRegions, sums } = fullSizeMask(map, t, meta.postprocess || {});
  const feats = { ...featuresOfSums(sums, raw, rawRegions, mask), ...pair };
  const quality = params ? estimate(feats, params) : null;
  const warnings = maskWarnings(rules, feats, params ? quality : 1, params ? params.warn_below : 0);
  return { mask, quality, warnings, features: feats, inverted: false };
}

/**
 * The definitions `wanted` (the model's, e.g. ["visible", "whole"]) of one X-ray's maps
 * ({definition: ProbabilityMap}, meta.outputs: each output's threshold and estimator), as
 * Segmenter._assess_all: the first's assess() fields with `definition` and `map`, the whole
 * lung's as its `whole` when both are wanted. `t`: one threshold for all (default: each its own).
 */
export function assessAll(rules, meta, maps, wanted, t = null) {
  const outputs = meta.outputs;
  const pair = maps.visible && maps.whole
    ? pairFeatures(maps.visible.thresholded(outputs.visible.threshold), maps.whole.thresholded(outputs.whole.threshold))
    : null;
  const one = (d) => ({ ...assess(rules, meta, maps[d], t ?? outputs[d].threshold, { params: outputs[d].quality, pair }),
    definition: d, map: maps[d] });
  const first = one(wanted[0]);
  if (wanted.length > 1) first.whole = one(wanted[1]);
  return first;
}

/** Every definition of an assessAll result: [the first, its whole lung's if any]. */
export const outlines = (result) => [result, ...(result.whole ? [result.whole] : [])];

/**
 * Segmenter.analyze in the browser. `maps` are the model's probabilities ({definition:
 * ProbabilityMap}) of the X-ray's RGBA pixels `rgba` (width x height); `segmentInverted()`
 * resolves to the maps of its negative and is called only when the image has no warning of its
 * own (`headerWarnings`: a DICOM's, counted as its own) but the first wanted definition's mask is
 * implausible or of low quality (it decides; all are then taken from the inverse). Resolves to
 * assessAll()'s result, each outline with `imageWarnings` (kept when the threshold changes).
 */
export async function analyze(rules, meta, rgba, width, height, maps, segmentInverted,
  { threshold = null, headerWarnings = [], wanted = ["visible"] } = {}) {
  const found = [...headerWarnings, ...imageWarnings(rules, imageStats(rgba, width, height))];
  let result = assessAll(rules, meta, maps, wanted, threshold);
  const doubtful = !plausible(rules, result.features) || result.warnings.some((w) => w.code === "low_quality");
  if (!found.length && doubtful) {
    const inverse = assessAll(rules, meta, await segmentInverted(), wanted, threshold);
    if (inverseIsBetter(rules, result.features, result.quality, inverse.features, inverse.quality)) {
      result = inverse;
      for (const outline of outlines(result)) outline.inverted = true;
      found.push(warning(rules, "inverted"));
    }
  }
  for (const outline of outlines(result)) Object.assign(outline, { imageWarnings: found, warnings: [...found, ...outline.warnings] });
  return result;
}
