#!/usr/bin/env node
// tfjs_unwrap.js: evaluate a TF.js weights module shipped as a minified
// browserify/UMD bundle (nsfwjs's model.min.js, group1-shardNofM.min.js)
// in an empty sandbox and print what it exports as JSON on stdout.
//
//   node scripts/tfjs_unwrap.js [file.min.js]   (stdin when no file)
//
// headtune itself unwraps these modules in Go without node
// (models/tfjs.UnwrapJSModule); this script is the independent reference the
// Go tests compare against, and a fallback for modules that compute their
// export. The sandbox has no require, process or filesystem access.
'use strict';
const fs = require('fs');
const vm = require('vm');

const src = fs.readFileSync(process.argv[2] || 0, 'utf8');
const mod = { exports: {} };
const sandbox = { module: mod, exports: mod.exports };
sandbox.window = sandbox;
sandbox.self = sandbox;
try {
  vm.runInNewContext(src, sandbox, { timeout: 10000, filename: process.argv[2] || 'stdin' });
} catch (e) {
  process.stderr.write(`tfjs_unwrap: ${process.argv[2] || 'stdin'}: ${e.message}\n`);
  process.exit(1);
}
process.stdout.write(JSON.stringify(mod.exports));
