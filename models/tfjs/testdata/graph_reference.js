// Runs a TF.js graph model in node with TF.js itself (CPU backend), the
// reference headtune's graph-model translator is checked against
// (TestGraphModelsMatchTFJS). Needs only @tensorflow/tfjs's bundled
// dist/tf.min.js: no npm install, no network.
//
// usage: node graph_reference.js TF_MIN_JS MODEL_JSON INPUT_F32 N H W C OUT_PREFIX NODE...
// writes OUT_PREFIX<i>.f32 (float32 little endian) for each NODE and
// prints its shape.
const fs = require('fs'); const path = require('path');
const [tfPath, modelJSON, inPath, n, h, w, c, outPrefix, ...outs] = process.argv.slice(2);
const tf = require(tfPath);
(async () => {
  await tf.setBackend('cpu'); await tf.ready();
  const dir = path.dirname(modelJSON);
  const mj = JSON.parse(fs.readFileSync(modelJSON));
  const specs = []; const bufs = [];
  for (const g of mj.weightsManifest) { specs.push(...g.weights); for (const p of g.paths) bufs.push(fs.readFileSync(path.join(dir, p))); }
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel(tf.io.fromMemory({ modelTopology: mj.modelTopology, weightSpecs: specs, weightData, format: mj.format }));
  const raw = fs.readFileSync(inPath);
  const x = tf.tensor4d(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)), [+n, +h, +w, +c]);
  let res = model.execute(x, outs);
  if (!Array.isArray(res)) res = [res];
  for (let i = 0; i < res.length; i++) {
    const d = await res[i].data();
    fs.writeFileSync(outPrefix + i + '.f32', Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    console.log(outs[i], JSON.stringify(res[i].shape));
  }
})().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
