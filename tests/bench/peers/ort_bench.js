// Times the exported ssdlite_mobilenet_v2_coco ONNX model through ONNX Runtime's CPU
// library (npm onnxruntime-node), batch 1, and checks its outputs against the TF.js
// reference first. Dev tooling for tests/bench/peers/run.sh, never part of the product.
//
// usage: node ort_bench.js MODEL.onnx REF_PREFIX WARMUP ITERS THREADS...
//   prints `RESULT onnxruntime threads=N median_ms=.. p90_ms=..` per thread count
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [modelPath, refPrefix, warmupArg, itersArg, ...threadArgs] = process.argv.slice(2);
  if (!modelPath || !refPrefix || !itersArg || threadArgs.length === 0) {
    console.error('usage: node ort_bench.js MODEL.onnx REF_PREFIX WARMUP ITERS THREADS...');
    process.exit(2);
  }
  const warmup = Number(warmupArg);
  const iters = Number(itersArg);
  const ref = loadReference(refPrefix);
  const input = new ort.Tensor('float32', nhwcToNchw(ref.input.data, 300, 300, 3),
    [1, 3, 300, 300]);

  for (const threads of threadArgs.map(Number)) {
    const session = await ort.InferenceSession.create(modelPath, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: ['cpu'],
    });
    checkOutputs(await session.run({ input }), ref, threads);
    const times = [], cpu = [];
    for (let i = 0; i < warmup + iters; i++) {
      const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
      await session.run({ input });
      if (i >= warmup) {
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        const c = process.cpuUsage(c0); // the whole process: every ORT thread
        cpu.push((c.user + c.system) / 1e3);
      }
    }
    times.sort((a, b) => a - b);
    cpu.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    const p90 = times[Math.min(times.length - 1, Math.round(0.9 * (times.length - 1)))];
    console.log(`RESULT onnxruntime threads=${threads} median_ms=${median.toFixed(3)} ` +
      `p90_ms=${p90.toFixed(3)} cpu_ms=${cpu[Math.floor(cpu.length / 2)].toFixed(3)} iters=${iters} ort=${require('onnxruntime-node/package.json').version}`);
    await session.release();
  }
}

// Refuses to time a model that does not compute the reference's numbers.
function checkOutputs(out, ref, threads) {
  let worst = 0;
  for (const name of ['box_encodings', 'class_scores', 'pooled']) {
    const ours = out[name].data;
    const theirs = ref[name].data;
    if (ours.length !== theirs.length) throw new Error(`${name}: ${ours.length} values, reference ${theirs.length}`);
    let diff = 0;
    let mag = 1e-12;
    for (let i = 0; i < ours.length; i++) {
      diff = Math.max(diff, Math.abs(ours[i] - theirs[i]));
      mag = Math.max(mag, Math.abs(theirs[i]));
    }
    worst = Math.max(worst, diff / mag);
  }
  if (!(worst < 1e-3)) throw new Error(`ONNX Runtime output differs from TF.js: relative ${worst}`);
  console.log(`onnxruntime threads=${threads}: matches TF.js reference (worst relative ${worst.toExponential(2)})`);
}

function loadReference(prefix) {
  const meta = JSON.parse(fs.readFileSync(prefix + '.json', 'utf8'));
  const bin = fs.readFileSync(prefix + '.bin');
  const ref = {};
  for (const [k, m] of Object.entries(meta)) {
    const copy = new Float32Array(m.count);
    for (let i = 0; i < m.count; i++) copy[i] = bin.readFloatLE(m.offset + 4 * i);
    ref[k] = { shape: m.shape, data: copy };
  }
  return ref;
}

function nhwcToNchw(src, h, w, c) {
  const dst = new Float32Array(h * w * c);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let k = 0; k < c; k++) dst[(k * h + y) * w + x] = src[(y * w + x) * c + k];
  return dst;
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
