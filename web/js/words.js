// Developer facts said in a user's words: lists of names, and the model card's validation
// figures without file system paths.

const DATASETS = { "covidqu-ex": "COVID-QU-Ex" };
const SPLITS = [[/^val/i, "validation"], [/^test/i, "test"], [/^train/i, "training"]];

/** ["PNG", "JPEG", "TIFF"] -> "PNG, JPEG or TIFF". */
export function formatList(names, conjunction = "and") {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} ${conjunction} ${names.at(-1)}`;
}

/** The card's metrics ({data: "../shared/data/covidqu-ex/Val", images, dice, iou, accuracy}) ->
 *  "validated on 478 COVID-QU-Ex X-rays (validation split): Dice 0.973, IoU 0.948, pixel accuracy 98.7%". */
export function describeValidation(metrics) {
  if (!metrics || typeof metrics.dice !== "number") return "";
  const parts = typeof metrics.data === "string" ? metrics.data.split(/[\\/]+/).filter(Boolean) : [];
  const split = SPLITS.find(([pattern]) => pattern.test(parts.at(-1) || ""));
  const folder = split ? parts.at(-2) : parts.at(-1);
  const dataset = folder ? `${DATASETS[folder.toLowerCase()] || folder} ` : "";
  const images = Number.isInteger(metrics.images) ? `${metrics.images} ` : "";
  const figures = [`Dice ${metrics.dice.toFixed(3)}`];
  if (typeof metrics.iou === "number") figures.push(`IoU ${metrics.iou.toFixed(3)}`);
  if (typeof metrics.accuracy === "number") figures.push(`pixel accuracy ${(metrics.accuracy * 100).toFixed(1)}%`);
  return `validated on ${images}${dataset}X-rays${split ? ` (${split[1]} split)` : ""}: ${figures.join(", ")}`;
}

/** Another lung definition's figures (metadata outputs[d].metrics: {"v7-whole-lung held out":
 *  {images, dice}}) -> "whole lung: Dice 0.956 on 37 X-rays of v7-whole-lung held out" (its first data set). */
export function describeOutput(name, metrics) {
  const [data, figures] = Object.entries(metrics || {})[0] || [];
  if (!figures || typeof figures.dice !== "number") return "";
  const images = Number.isInteger(figures.images) ? `${figures.images} ` : "";
  return `${name}: Dice ${figures.dice.toFixed(3)} on ${images}X-rays of ${data.split(/[\\/]+/).filter(Boolean).join(" ")}`;
}
