// Builds web/dist: src/app.tsx bundled and minified by esbuild into assets/ under content-hashed
// names (so the gateway can serve them `immutable`), the stylesheet and icon likewise, and
// index.html pointing at them (served `no-cache`: it is the one file whose name never changes).
// Usage: node build.mjs [outdir]   (default: dist)
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, "dist");

await rm(out, { recursive: true, force: true });
const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/app.tsx", "src/style.css", "src/icon.svg"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".svg": "copy" },
  entryNames: "assets/[name]-[hash]",
  outdir: out,
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

/** The output file of one entry point, as a URL path from the site's root. */
const outputOf = (entry) => {
  const [path] = Object.entries(result.metafile.outputs).find(([, output]) => output.entryPoint === entry);
  return "/assets/" + basename(path);
};
const page = (await readFile(join(here, "index.html"), "utf8"))
  .replace("{{js}}", outputOf("src/app.tsx"))
  .replace("{{css}}", outputOf("src/style.css"))
  .replace("{{icon}}", outputOf("src/icon.svg"));
await mkdir(out, { recursive: true });
await writeFile(join(out, "index.html"), page);
