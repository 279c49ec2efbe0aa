#!/usr/bin/env node
// Runs imbridge's schema and every audit query of the README on chdb, an
// embedded build of current ClickHouse, so that the SQL users run on recent
// releases is checked as well as on Debian's 18.16 (what the Go tests start).
//
//   node check.js --schema SCHEMA.sql --fixture FIXTURE.sql --readme README.md [--json]
//
// SCHEMA.sql is what `imbridge schema` prints ("-" reads it from stdin);
// FIXTURE.sql is store/testdata/audit_fixture.sql. The rules are the Go
// tests' (store/regress_readme_sql_test.go): statements end with a line
// ending in ";" and lines starting with "--" are comments; in the README,
// inside every block fenced with exactly ```sql, a "--" line titles the query
// below it and every other non-blank line is one whole query ending in ";"
// (a block whose first statement is DDL — CREATE, ALTER, DROP… — shows
// schema and is left out).
// Every statement must succeed and every query must return rows; the exit
// status is 1 otherwise. --json prints [{line, title, rows}] on stdout.
"use strict";

const fs = require("fs");

function usage(msg) {
  process.stderr.write(`${msg}\nusage: node check.js --schema FILE|- --fixture FILE --readme FILE [--json]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const out = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--json") out.json = true;
    else if (a === "--schema" || a === "--fixture" || a === "--readme") {
      if (i + 1 >= argv.length) usage(`${a} needs a file`);
      out[a.slice(2)] = argv[++i];
    } else usage(`unknown argument ${a}`);
  }
  for (const k of ["schema", "fixture", "readme"]) if (!out[k]) usage(`--${k} is required`);
  return out;
}

function read(path) {
  return fs.readFileSync(path === "-" ? 0 : path, "utf8");
}

// statements splits SQL at lines ending with ";", dropping "--" lines.
function statements(sql, name) {
  const out = [];
  let cur = [];
  sql.split("\n").forEach((line, i) => {
    const t = line.trim();
    if (t.startsWith("--")) return;
    cur.push(line);
    if (t.endsWith(";")) {
      const st = cur.join("\n").trim().replace(/;$/, "").trim();
      if (st) out.push({ sql: st, where: `${name}:${i + 1}` });
      cur = [];
    }
  });
  if (cur.join("").trim()) throw new Error(`${name}: a statement without a final ';'`);
  return out;
}

// A ```sql block whose first statement is DDL shows schema (the deployment
// section's cluster DDL), not queries to run.
const ddlBlock = /^(CREATE|ALTER|DROP|RENAME|ATTACH|DETACH|TRUNCATE)\b/i;

// readmeQueries extracts the README's queries (see the header).
function readmeQueries(md) {
  const out = [];
  const bad = [];
  let inBlock = false;
  let first = false;
  let ddl = false;
  let title = "";
  md.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (inBlock && first && line !== "" && !line.startsWith("--")) {
      first = false;
      ddl = ddlBlock.test(line);
    }
    if (!inBlock) {
      inBlock = line === "```sql";
      first = true;
      ddl = false;
      title = "";
    } else if (line.startsWith("```")) inBlock = false;
    else if (ddl || line === "") {
      // skipped
    } else if (line.startsWith("--")) title = line.replace(/^--/, "").trim();
    else if (!line.endsWith(";")) bad.push(`README.md:${i + 1}: a query must be one line ending with ';'`);
    else {
      out.push({ line: i + 1, title, sql: line.replace(/;$/, "") });
      title = "";
    }
  });
  return { queries: out, bad };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  let chdb;
  try {
    chdb = require("chdb");
  } catch (e) {
    process.stderr.write(`chdb is not installed here: run npm install in ${__dirname} (${e.message})\n`);
    process.exit(3);
  }
  const session = new chdb.Session();
  let failed = 0;
  const fail = (msg) => {
    failed++;
    process.stderr.write(`FAIL ${msg}\n`);
  };
  try {
    const version = session.query("SELECT version()", "TabSeparated").trim();
    process.stderr.write(`chdb ${require("chdb/package.json").version}, ClickHouse ${version}\n`);
    for (const [name, path] of [["schema", args.schema], ["fixture", args.fixture]]) {
      for (const st of statements(read(path), name)) {
        try {
          session.query(st.sql, "TabSeparated");
        } catch (e) {
          fail(`${st.where}: ${e.message}\n  ${st.sql.slice(0, 300)}`);
        }
      }
    }
    if (failed > 0) process.exit(1); // queries on a broken schema say nothing
    const { queries, bad } = readmeQueries(read(args.readme));
    bad.forEach(fail);
    if (queries.length === 0) fail("README.md: no queries found");
    const results = [];
    for (const q of queries) {
      try {
        const text = session.query(q.sql, "JSONEachRow");
        const rows = text.split("\n").filter((l) => l.trim() !== "").length;
        results.push({ line: q.line, title: q.title, rows });
        if (rows === 0) fail(`README.md:${q.line} (${q.title}): no rows on the fixture`);
        else process.stderr.write(`ok   README.md:${q.line}  ${rows} rows  ${q.title}\n`);
      } catch (e) {
        fail(`README.md:${q.line} (${q.title}): ${e.message}\n  ${q.sql}`);
      }
    }
    if (args.json) process.stdout.write(JSON.stringify(results) + "\n");
    process.stderr.write(`${queries.length} queries, ${failed} failures\n`);
  } finally {
    session.close();
  }
  process.exit(failed > 0 ? 1 : 0);
}

main();
