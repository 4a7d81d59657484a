// Runs the original ssdlite_mobilenet_v2_coco TF.js graph (pure-JS CPU backend) on a
// seeded random input and writes the tensors the PyTorch port is checked against.
// Dev tooling for tests/bench/peers/run.sh, never part of the product.
//
// usage: node tfjs_reference.js MODEL_DIR OUT_PREFIX
//   writes OUT_PREFIX.json (names, shapes, byte offsets) and OUT_PREFIX.bin (float32 LE)
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const tfconv = require('@tensorflow/tfjs-converter');

const INPUT_NODE = 'Preprocessor/sub'; // already normalised: x*2/255 - 1
const OUTPUTS = {
  box_encodings: 'concat',
  class_scores: 'Postprocessor/convert_scores',
  conv_1: 'FeatureExtractor/MobilenetV2/Conv_1/Relu6',
};

async function main() {
  const [modelDir, outPrefix] = process.argv.slice(2);
  if (!modelDir || !outPrefix) {
    console.error('usage: node tfjs_reference.js MODEL_DIR OUT_PREFIX');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  const model = await tfconv.loadGraphModel(fileHandler(modelDir));

  const input = tf.tensor4d(seededUniform(300 * 300 * 3, 12345, -1, 1), [1, 300, 300, 3]);
  const names = Object.values(OUTPUTS);
  const results = model.execute({ [INPUT_NODE]: input }, names);
  const tensors = { input };
  Object.keys(OUTPUTS).forEach((k, i) => { tensors[k] = results[i]; });
  tensors.pooled = tf.mean(tensors.conv_1, [1, 2]);
  delete tensors.conv_1;

  const meta = {};
  const chunks = [];
  let offset = 0;
  for (const [k, t] of Object.entries(tensors)) {
    const data = Buffer.from(new Float32Array(t.dataSync()).buffer);
    meta[k] = { shape: t.shape, offset, count: t.size };
    chunks.push(data);
    offset += data.length;
  }
  fs.writeFileSync(outPrefix + '.bin', Buffer.concat(chunks));
  fs.writeFileSync(outPrefix + '.json', JSON.stringify(meta, null, 1));
  console.log(`wrote ${outPrefix}.json/.bin: ${Object.keys(meta).join(', ')}`);
}

// Reads model.json and its shards from disk (tfjs-core's http loader needs a server).
function fileHandler(dir) {
  return {
    load: async () => {
      const model = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      const specs = [];
      const bufs = [];
      for (const group of model.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) bufs.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(bufs);
      return {
        modelTopology: model.modelTopology,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
      };
    },
  };
}

// Mulberry32: deterministic across Node versions, unlike Math.random.
function seededUniform(n, seed, lo, hi) {
  const out = new Float32Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i++) {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = lo + (hi - lo) * u;
  }
  return out;
}

main().catch((e) => { console.error(e); process.exit(1); });
