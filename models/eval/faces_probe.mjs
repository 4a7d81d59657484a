// Dev-only probe (issue 10 §4, people words): runs @vladmandic/face-api 1.7.15's own bundle
// (tiny face detector at 416, score >= 0.4, then its age/gender net) on PPM images and prints
// one line per image: "file WxH score:gender+probability:a<age>:h<face height / image height> ...".
// Never part of the product or its tests.
//
//   npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz   # -> package/
//   for f in IMAGES/*.jpg; do djpeg "$f" > "OUT/$(basename "$f" .jpg).ppm"; done
//   node models/eval/faces_probe.mjs PACKAGE_DIR OUT/*.ppm
//
// The bundle believes it runs in a browser (its Node path wants tfjs-node's native code):
// a window and a document object are enough, and tensors come from the PPM bytes.
import fs from 'fs';
import path from 'path';

globalThis.window = globalThis;
globalThis.document = { createElement: () => ({}) };
const pkg = path.resolve(process.argv[2]);
const faceapi = await import(path.join(pkg, 'dist', 'face-api.esm.js'));
const tf = faceapi.tf;
await tf.setBackend('cpu');
await tf.ready();

async function weightMap(name) {
  const manifest = JSON.parse(fs.readFileSync(path.join(pkg, 'model', `${name}-weights_manifest.json`)));
  const buf = fs.readFileSync(path.join(pkg, 'model', manifest[0].paths[0]));
  return tf.io.decodeWeights(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length),
    manifest.flatMap((g) => g.weights));
}
faceapi.nets.tinyFaceDetector.loadFromWeightMap(await weightMap('tiny_face_detector_model'));
faceapi.nets.ageGenderNet.loadFromWeightMap(await weightMap('age_gender_model'));

function readPPM(file) {   // binary P6, maxval 255, no comments (what djpeg writes)
  const b = fs.readFileSync(file);
  const tok = [];
  let pos = 0;
  while (tok.length < 4) {
    while (b[pos] === 0x20 || b[pos] === 0x0a) pos++;
    const start = pos;
    while (b[pos] !== 0x20 && b[pos] !== 0x0a) pos++;
    tok.push(b.subarray(start, pos).toString());
  }
  pos++;
  const w = +tok[1], h = +tok[2];
  return tf.tensor3d(new Uint8Array(b.buffer, b.byteOffset + pos, w * h * 3), [h, w, 3], 'int32');
}

for (const file of process.argv.slice(3)) {
  const t = readPPM(file);
  const faces = await faceapi.detectAllFaces(t, new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.4 }))
    .withAgeAndGender();
  const found = faces.map((r) => `${r.detection.score.toFixed(2)}:${r.gender[0]}${r.genderProbability.toFixed(2)}`
    + `:a${r.age.toFixed(0)}:h${(r.detection.box.height / t.shape[0]).toFixed(2)}`);
  console.log(path.basename(file), `${t.shape[1]}x${t.shape[0]}`, found.join(' '));
  t.dispose();
}
