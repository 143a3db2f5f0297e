// `npm pack`, install the tarball alone into a fresh directory, import it there.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const out = mkdtempSync(join(tmpdir(), "agentdb-pack-"));
try {
  const packed = JSON.parse(execFileSync(npm, ["pack", "--json", "--pack-destination", out], { cwd: pkg, encoding: "utf8" }));
  const tgz = join(out, packed[0].filename);
  const files = packed[0].files.map((f) => f.path);
  if (!files.includes("dist/index.js") || !files.includes("dist/index.d.ts")) throw new Error(`tarball lacks dist: ${files}`);
  if (files.some((f) => f.startsWith("src/") || f.startsWith("test/"))) throw new Error(`tarball has sources: ${files}`);
  const app = join(out, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "pack-test", private: true, type: "module" }));
  execFileSync(npm, ["install", "--no-audit", "--no-fund", tgz], { cwd: app, stdio: "inherit" });
  execFileSync(
    process.execPath,
    ["-e", "import('@agentdb/client').then(m => { if (!m.EphemeralAgent || !m.AgentDBClient || !m.AgentDBError) process.exit(1) })"],
    { cwd: app, stdio: "inherit" },
  );
  console.log(`pack-test ok: ${packed[0].filename}, ${packed[0].size} bytes packed, ${files.length} files`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
