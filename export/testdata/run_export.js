#!/usr/bin/env node
// Runs a model made by `headtune export` outside headtune, with
// onnxruntime-node, and prints its class probabilities as JSON.
//
//   node run_export.js model.onnx [pixels.f32 [count]]
//
// pixels.f32 holds `count` images as little-endian float32 raw 0..255
// pixel values, already resized to the model's input size (see the
// headtune.input_layout metadata), in the model's layout and channel order.
// Without it a mid-grey image is used. The script reads everything it needs
// (input name, size, layout, normalisation, class names) from the model's
// metadata_props, and applies the normalisation itself when the model was
// exported without --with-preprocessing.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

// readMetadata returns the metadata_props (ModelProto field 14, entries of
// key=1, value=2) of an ONNX file, scanning only the top-level protobuf
// fields: no ONNX schema needed.
function readMetadata(buf) {
  let pos = 0;
  const varint = (b, end) => {
    let v = 0, mul = 1;
    for (;;) {
      if (pos >= end) throw new Error('truncated protobuf');
      const c = b[pos++];
      v += (c & 0x7f) * mul;
      if (c < 0x80) return v;
      mul *= 128;
    }
  };
  const fields = (start, end, onBytes) => {
    pos = start;
    while (pos < end) {
      const tag = varint(buf, end);
      const field = Math.floor(tag / 8), wire = tag & 7;
      if (wire === 0) varint(buf, end);
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else if (wire === 2) {
        const len = varint(buf, end);
        const at = pos;
        pos += len;
        if (pos > end) throw new Error('truncated protobuf');
        onBytes(field, at, pos);
      } else throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  };
  const props = {};
  fields(0, buf.length, (field, s, e) => {
    if (field !== 14) return;
    const saved = pos;
    const kv = {};
    fields(s, e, (f, a, b) => { kv[f] = buf.toString('utf8', a, b); });
    pos = saved;
    props[kv[1] || ''] = kv[2] || '';
  });
  return props;
}

async function main() {
  const [modelPath, pixelsPath, countArg] = process.argv.slice(2);
  if (!modelPath) throw new Error('usage: node run_export.js model.onnx [pixels.f32 [count]]');
  const meta = readMetadata(fs.readFileSync(modelPath));
  if (!meta['headtune.classes']) throw new Error(`${modelPath} has no headtune metadata: it was not made by headtune export`);
  const classes = JSON.parse(meta['headtune.classes']);
  const spec = JSON.parse(meta['headtune.preprocess']);
  const rawInput = meta['headtune.with_preprocessing'] === 'true';
  const nhwc = spec.layout === 'NHWC';
  const dims = nhwc ? [spec.height, spec.width, spec.channels] : [spec.channels, spec.height, spec.width];
  const per = dims[0] * dims[1] * dims[2];

  let data;
  if (pixelsPath) {
    const b = fs.readFileSync(pixelsPath);
    data = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
  } else {
    data = new Float32Array(per).fill(128);
  }
  const n = countArg ? Number(countArg) : data.length / per;
  if (!Number.isInteger(n) || n * per !== data.length) throw new Error(`${data.length} values are not ${n} images of ${per}`);

  if (!rawInput) {
    // (p*scale - mean[c]) / std[c] in float32, as headtune computes it.
    const f = Math.fround, hw = spec.height * spec.width;
    for (let i = 0; i < data.length; i++) {
      const c = nhwc ? i % spec.channels : Math.floor(i / hw) % spec.channels;
      data[i] = f(f(f(data[i] * f(spec.scale)) - f(spec.mean[c])) / f(spec.std[c]));
    }
  }

  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
  const input = meta['headtune.input_name'];
  const out = await session.run({ [input]: new ort.Tensor('float32', data, [n, ...dims]) }, ['probabilities']);
  const p = out.probabilities.data;
  const k = classes.length;
  const rows = [];
  for (let i = 0; i < n; i++) rows.push(Array.from(p.subarray(i * k, (i + 1) * k)));
  const top = rows.map((r) => classes[r.indexOf(Math.max(...r))]);
  console.log(JSON.stringify({ classes, top, probabilities: rows }));
}

main().catch((e) => { console.error(e.message); process.exit(1); });
