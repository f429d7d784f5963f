// Calls the official Node SDK (@passageidentity/passage-node) for
// spec/node_sdk_spec.lua:
//
//   node passage_node.js <sdk dir> <base url> <app id> <api key> <steps file>
//
// The steps file holds a JSON array of [method, ...arguments], each called in
// turn on the SDK's passage.user; ["methods"] instead lists the operations
// passage.user offers. An argument {"result": n, "field": "id"} stands for
// that field of step n's value (1-based). Prints one JSON array with, per
// step, {"ok": value} or {"error": {name, message, statusCode, errorCode}}.
//
// The SDK has the hosted service's address built in; its documented fetchApi
// option sends each request to <base url> instead, and refuses any other URL,
// so no request leaves the machine.
'use strict';
const fs = require('fs');

const [sdkDir, base, appID, apiKey, stepsFile] = process.argv.slice(2);
const sdk = require(require.resolve('@passageidentity/passage-node', { paths: [sdkDir] }));
const HOSTED = 'https://api.passage.id/v1/';

function fetchApi(url, init) {
  url = String(url);
  if (!url.startsWith(HOSTED)) return Promise.reject(new Error('request to an unexpected URL: ' + url));
  return fetch(base + '/' + url.slice(HOSTED.length), init);
}

const passage = new sdk.Passage({ appID, apiKey, fetchApi });

function methods(object) {
  const names = new Set();
  for (let p = Object.getPrototypeOf(object); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (name !== 'constructor' && name !== 'parseError' && typeof object[name] === 'function') names.add(name);
    }
  }
  return [...names].sort();
}

async function main() {
  const results = [];
  const resolve = (arg) => {
    if (arg === null || typeof arg !== 'object' || !('result' in arg)) return arg;
    const earlier = results[arg.result - 1];
    return earlier && earlier.ok ? earlier.ok[arg.field] : undefined;
  };
  for (const [method, ...rawArgs] of JSON.parse(fs.readFileSync(stepsFile, 'utf8'))) {
    const args = rawArgs.map(resolve);
    if (method === 'methods') {
      results.push({ ok: methods(passage.user) });
      continue;
    }
    try {
      const value = await passage.user[method](...args);
      results.push({ ok: value === undefined ? null : value });
    } catch (e) {
      results.push({ error: { name: e.name, message: e.message, statusCode: e.statusCode ?? null,
        errorCode: e.errorCode ?? null } });
    }
  }
  process.stdout.write(JSON.stringify(results) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
