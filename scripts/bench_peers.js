#!/usr/bin/env node
// bench_peers.js: the onnxruntime-node peer of scripts/bench_peers.sh.
//
//   node scripts/bench_peers.js --images DIR --onnx FILE --backbone NAME
//        [--layout NHWC|NCHW] [--norm unit|imagenet] [--size 224] [--batch 16]
//        [--threads 2] [--workers 2] [--limit 0] [--round 0] [--spin]
//        [--decoder jpeg-js|sharp]
//
// The same ONNX file as headtune, run by onnxruntime-node (intraOpNumThreads
// --threads, interOpNumThreads 1, sequential execution, all graph
// optimisations, intra-op spin-waiting off like headtune's default unless
// --spin). JPEGs are decoded by jpeg-js (pure JS; libjpeg-style fancy
// upsampling) and squashed to SIZE x SIZE with a plain bilinear resize written
// here (half-pixel centres, no antialias: the same sampling as cv2.resize
// INTER_LINEAR), then scaled (x/255) and, for "imagenet", normalised by the
// ImageNet mean/std.
//
// --decoder sharp instead decodes and resizes with sharp (libvips with
// mozjpeg's libjpeg-turbo, native, from npm's prebuilt @img/sharp-linux-x64):
// resize(S, S, {fit: 'fill', kernel: 'linear'}) with libvips' default
// shrink-on-load (DCT-reduced JPEG decoding, like headtune --fast-jpeg), then
// the same scaling in JS. sharp runs on libuv's thread pool: --workers sets
// UV_THREADPOOL_SIZE and sharp.concurrency(1) keeps libvips at one thread per
// image.
//
// Prints JSON lines like bench_peers.py: "check" (the first outputs for a
// deterministic probe tensor, to compare with OpenCV DNN on the same file),
// "decode" (ms per image on the main thread alone), "infer" (images/s on
// tensors prepared in advance) and "e2e" (images/s from file names: --workers
// worker_threads decode ahead, the main thread runs the session). Buffers are
// pooled and reused; nothing is allocated per image in the timed loops except
// jpeg-js's own decode output.
//
// Modules come from $BENCH_PEERS_NODE_DIR/node_modules (default
// .deps/bench_peers_node, set up by scripts/bench_peers.sh with
// `npm install --ignore-scripts onnxruntime-node jpeg-js`).
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

const REPO = path.resolve(__dirname, '..');
const NODE_DIR = process.env.BENCH_PEERS_NODE_DIR || path.join(REPO, '.deps', 'bench_peers_node');
const req = createRequire(path.join(NODE_DIR, 'package.json'));
const jpeg = req('jpeg-js');
let sharp = null; // loaded on demand: --decoder sharp

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
const CHECK_VALUES = 16;

function parseArgs(argv) {
  const a = {
    images: '', onnx: '', backbone: '', layout: 'NCHW', norm: 'imagenet', size: 224, batch: 16,
    threads: 2, workers: 2, limit: 0, round: 0, spin: false, decoder: 'jpeg-js',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--spin') { a.spin = true; continue; }
    if (!k.startsWith('--') || i + 1 >= argv.length) die(`bad argument ${k} (see the header of ${__filename})`);
    const name = k.slice(2);
    if (!(name in a)) die(`unknown option ${k}`);
    const v = argv[++i];
    a[name] = typeof a[name] === 'number' ? Number(v) : v;
    if (typeof a[name] === 'number' && !Number.isFinite(a[name])) die(`${k} ${v}: not a number`);
  }
  if (!a.images || !a.onnx) die('needs --images DIR and --onnx FILE');
  if (a.layout !== 'NCHW' && a.layout !== 'NHWC') die(`--layout ${a.layout}: NCHW or NHWC`);
  if (a.norm !== 'unit' && a.norm !== 'imagenet') die(`--norm ${a.norm}: unit or imagenet`);
  if (a.decoder !== 'jpeg-js' && a.decoder !== 'sharp') die(`--decoder ${a.decoder}: jpeg-js or sharp`);
  if (a.size < 1 || a.batch < 1 || a.threads < 1 || a.workers < 1) die('--size, --batch, --threads and --workers must be positive');
  return a;
}

function die(msg) {
  process.stderr.write(`bench_peers.js: ${msg}\n`);
  process.exit(2);
}

// Preprocessing: decode the JPEG at file p and write the SIZE x SIZE tensor
// (layout and normalisation from opt) into out (Float32Array of 3*S*S).
// Bilinear squash resize with half-pixel centres, clamped at the edges.
// xs, ys are per-call scratch tables reused by the caller.
function makeLoader(opt) {
  const S = opt.size;
  const nchw = opt.layout === 'NCHW';
  const scale = new Float32Array(3);
  const bias = new Float32Array(3);
  for (let c = 0; c < 3; c++) {
    if (opt.norm === 'imagenet') { scale[c] = 1 / (255 * STD[c]); bias[c] = -MEAN[c] / STD[c]; } else { scale[c] = 1 / 255; bias[c] = 0; }
  }
  const x0 = new Int32Array(S), x1 = new Int32Array(S), fx = new Float32Array(S);
  const y0 = new Int32Array(S), y1 = new Int32Array(S), fy = new Float32Array(S);
  let tw = -1, th = -1;
  function tables(w, h) {
    if (w === tw && h === th) return;
    for (let i = 0; i < S; i++) {
      let sx = (i + 0.5) * w / S - 0.5; if (sx < 0) sx = 0;
      let ix = Math.floor(sx); if (ix > w - 1) ix = w - 1;
      x0[i] = ix * 3; x1[i] = Math.min(ix + 1, w - 1) * 3; fx[i] = sx - ix;
      let sy = (i + 0.5) * h / S - 0.5; if (sy < 0) sy = 0;
      let iy = Math.floor(sy); if (iy > h - 1) iy = h - 1;
      y0[i] = iy * w * 3; y1[i] = Math.min(iy + 1, h - 1) * w * 3; fy[i] = sy - iy;
    }
    tw = w; th = h;
  }
  return function load(p, out) {
    const img = jpeg.decode(fs.readFileSync(p), { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 });
    const d = img.data, w = img.width, h = img.height;
    if (d.length !== w * h * 3) throw new Error(`${p}: jpeg-js returned ${d.length} bytes for ${w}x${h} RGB`);
    tables(w, h);
    const plane = S * S;
    for (let oy = 0; oy < S; oy++) {
      const r0 = y0[oy], r1 = y1[oy], wy = fy[oy];
      for (let ox = 0; ox < S; ox++) {
        const a0 = r0 + x0[ox], a1 = r0 + x1[ox], b0 = r1 + x0[ox], b1 = r1 + x1[ox], wx = fx[ox];
        const o = oy * S + ox;
        for (let c = 0; c < 3; c++) {
          const top = d[a0 + c] + (d[a1 + c] - d[a0 + c]) * wx;
          const bot = d[b0 + c] + (d[b1 + c] - d[b0 + c]) * wx;
          const v = (top + (bot - top) * wy) * scale[c] + bias[c];
          if (nchw) out[c * plane + o] = v; else out[o * 3 + c] = v;
        }
      }
    }
  };
}

// makeSharpLoader: async (p, out) => void; sharp decodes (shrink-on-load) and
// resizes to S x S RGB uint8, the scaling into out happens here.
function makeSharpLoader(opt) {
  const S = opt.size, plane = S * S, nchw = opt.layout === 'NCHW';
  const scale = new Float32Array(3), bias = new Float32Array(3);
  for (let c = 0; c < 3; c++) {
    if (opt.norm === 'imagenet') { scale[c] = 1 / (255 * STD[c]); bias[c] = -MEAN[c] / STD[c]; } else { scale[c] = 1 / 255; bias[c] = 0; }
  }
  return async function load(p, out) {
    const { data, info } = await sharp(p).removeAlpha().resize(S, S, { fit: 'fill', kernel: 'linear' })
      .raw().toBuffer({ resolveWithObject: true });
    if (info.width !== S || info.height !== S || info.channels !== 3) throw new Error(`${p}: sharp gave ${info.width}x${info.height}x${info.channels}`);
    for (let o = 0; o < plane; o++) {
      for (let c = 0; c < 3; c++) {
        const v = data[o * 3 + c] * scale[c] + bias[c];
        if (nchw) out[c * plane + o] = v; else out[o * 3 + c] = v;
      }
    }
  };
}

function listImages(dir, limit) {
  let names;
  try {
    names = fs.readdirSync(dir).filter((n) => /\.jpe?g$/i.test(n)).sort();
  } catch (e) {
    die(`list ${dir}: ${e.message}`);
  }
  if (names.length === 0) die(`no .jpg files in ${dir}`);
  if (limit > 0) names = names.slice(0, limit);
  return names.map((n) => path.join(dir, n));
}

function emit(o) { process.stdout.write(JSON.stringify(o) + '\n'); }

// ------------------------------------------------------------ worker thread
if (!isMainThread) {
  const load = makeLoader(workerData);
  parentPort.on('message', (m) => {
    const out = new Float32Array(m.buf);
    try {
      load(m.path, out);
      parentPort.postMessage({ i: m.i, buf: m.buf }, [m.buf]);
    } catch (e) {
      parentPort.postMessage({ i: m.i, err: String(e && e.message || e) });
    }
  });
  return;
}

// ------------------------------------------------------------ main thread
async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.decoder === 'sharp') {
    process.env.UV_THREADPOOL_SIZE = String(a.workers); // before the pool's first use
    sharp = req('sharp');
    sharp.concurrency(1);
    sharp.cache(false);
  }
  const ort = req('onnxruntime-node');
  const paths = listImages(a.images, a.limit);
  const N = paths.length, S = a.size, L = 3 * S * S;
  const dims = a.layout === 'NCHW' ? [3, S, S] : [S, S, 3];
  const sess = await ort.InferenceSession.create(a.onnx, {
    intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: a.spin ? '1' : '0' }, inter_op: { allow_spinning: '0' } } },
  });
  const inName = sess.inputNames[0], outName = sess.outputNames[0];
  const sync = a.decoder === 'jpeg-js' ? makeLoader(a) : null;
  const load = sync ? async (p, out) => sync(p, out) : makeSharpLoader(a);
  const batchBuf = new Float32Array(a.batch * L);
  const tensors = new Map(); // batch size -> Tensor over batchBuf, reused
  const tensorFor = (m) => {
    let t = tensors.get(m);
    if (!t) { t = new ort.Tensor('float32', batchBuf.subarray(0, m * L), [m, ...dims]); tensors.set(m, t); }
    return t;
  };
  const run = async (m) => (await sess.run({ [inName]: tensorFor(m) }))[outName];
  const common = { peer: `onnxruntime-node + ${a.decoder}`, backbone: a.backbone, n: N, round: a.round };

  // warm-up on real images, then the probe
  const w = Math.min(a.batch, N);
  for (let i = 0; i < w; i++) await load(paths[i], batchBuf.subarray(i * L, (i + 1) * L));
  await run(w);
  for (let j = 0; j < L; j++) batchBuf[j] = ((j * 7919) % 1000) / 1000;
  const probe = await run(1);
  emit({ mode: 'check', output: Array.from(probe.data.slice(0, CHECK_VALUES)), ...common });

  // decode: main thread only, into one preallocated array
  const all = new Float32Array(N * L);
  let t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await load(paths[i], all.subarray(i * L, (i + 1) * L));
  emit({ mode: 'decode', ms_per_image: Number(process.hrtime.bigint() - t) / 1e6 / N, ...common });

  // infer: tensors prepared in advance (copied batch by batch into the
  // session's reused input buffer: ~1 MB memcpy per batch of 16)
  t = process.hrtime.bigint();
  for (let i = 0; i < N; i += a.batch) {
    const m = Math.min(a.batch, N - i);
    batchBuf.set(all.subarray(i * L, (i + m) * L));
    await run(m);
  }
  emit({ mode: 'infer', images_per_s: N / (Number(process.hrtime.bigint() - t) / 1e9), ...common });

  // e2e: decoders fill pooled buffers (jpeg-js: worker_threads; sharp:
  // libuv's pool), the main thread assembles batches in file order and runs
  // them; a window of 2 batches keeps the decoders busy while a batch runs.
  // jpeg-js workers are started and warmed up (one decode each, so jpeg-js
  // is loaded and compiled) before the clock starts, as a long-running
  // service would keep them.
  const window = Math.max(2 * a.batch, 2 * a.workers);
  const pool = [];
  for (let i = 0; i < window; i++) pool.push(new ArrayBuffer(L * 4));
  const ready = new Map(); // index -> ArrayBuffer
  let next = 0, waiting = null, failed = null;
  const wake = () => { if (waiting) { const r = waiting; waiting = null; r(); } };
  const done = (i, buf) => { ready.set(i, buf); wake(); };
  const fail = (e) => { failed = failed || e; wake(); };
  const workers = [];
  let submit;
  if (sync) {
    for (let k = 0; k < a.workers; k++) workers.push(new Worker(__filename, { workerData: { size: a.size, layout: a.layout, norm: a.norm } }));
    await Promise.all(workers.map((wk) => new Promise((resolve, reject) => {
      const buf = pool.pop();
      const onErr = (e) => { wk.off('message', onMsg); reject(e); };
      const onMsg = (m) => {
        wk.off('error', onErr);
        if (m.err) reject(new Error(m.err)); else { pool.push(m.buf); resolve(); }
      };
      wk.once('message', onMsg);
      wk.once('error', onErr);
      wk.postMessage({ i: -1, path: paths[0], buf }, [buf]);
    })));
    for (const wk of workers) {
      wk.on('message', (m) => (m.err ? fail(new Error(m.err)) : done(m.i, m.buf)));
      wk.on('error', fail);
    }
    submit = (i, buf) => workers[i % a.workers].postMessage({ i, path: paths[i], buf }, [buf]);
  } else {
    submit = (i, buf) => load(paths[i], new Float32Array(buf)).then(() => done(i, buf), fail);
  }
  const dispatch = () => {
    while (next < N && pool.length > 0) {
      submit(next, pool.pop());
      next++;
    }
  };
  t = process.hrtime.bigint();
  dispatch();
  let k = 0;
  for (let i = 0; i < N; i++) {
    while (!ready.has(i)) {
      if (failed) throw failed;
      await new Promise((r) => { waiting = r; });
    }
    const buf = ready.get(i);
    ready.delete(i);
    batchBuf.set(new Float32Array(buf), k * L);
    pool.push(buf);
    dispatch();
    if (++k === a.batch) { await run(k); k = 0; }
  }
  if (k > 0) await run(k);
  emit({ mode: 'e2e', images_per_s: N / (Number(process.hrtime.bigint() - t) / 1e9), workers: a.workers, ...common });
  await Promise.all(workers.map((wk) => wk.terminate()));
}

main().catch((e) => {
  process.stderr.write(`bench_peers.js: ${e && e.stack || e}\n`);
  process.exit(1);
});
