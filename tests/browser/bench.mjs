// berth-bench's console workload (bench/src/console.rs): in Debian's
// chromium, how soon a repository page answers and shows its first 100
// tags, and how long an archive takes to upload through the page. Input:
// BERTH_CONSOLE_BENCH (JSON: url, user, password, repo, loads, archive,
// org); output: one JSON line.

import { chromium } from "playwright-core";

const cfg = JSON.parse(process.env.BERTH_CONSOLE_BENCH);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
page.setDefaultTimeout(30 * 60 * 1000);
await page.goto(`${cfg.url}/console/`);
await page.getByLabel("User (user@tenant, tenant, or region@AK)").fill(cfg.user);
await page.getByLabel("Password or login key").fill(cfg.password);
await page.getByRole("button", { name: "Sign in" }).click();
await page.getByRole("heading", { name: "Organizations", level: 1 }).waitFor();

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const out = { page_ttfb_ms: [], tags_ttfb_ms: [], rendered_ms: [] };
for (let i = 0; i < cfg.loads; i++) {
  await page.goto("about:blank");
  const start = Date.now();
  await page.goto(`${cfg.url}/console/#/repo/${cfg.repo}`);
  await page.locator("main table tbody tr").nth(99).waitFor();
  out.rendered_ms.push(Date.now() - start);
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const tags = performance.getEntriesByType("resource").find((r) => r.name.includes("/tags?"));
    return { page: nav.responseStart - nav.startTime, tags: tags ? tags.responseStart - tags.startTime : -1 };
  });
  out.page_ttfb_ms.push(timing.page);
  out.tags_ttfb_ms.push(timing.tags);
}
const result = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, median(v)]));

if (cfg.archive) {
  await page.goto(`${cfg.url}/console/#/upload`);
  await page.locator("main h1").waitFor();
  await page.getByLabel("Into organization").selectOption(cfg.org);
  await page.getByLabel("Archives").setInputFiles([cfg.archive]);
  const start = Date.now();
  await page.getByRole("button", { name: "Upload" }).click();
  const row = page.locator("main li .state");
  await row.filter({ hasText: /pushed|:/ }).waitFor();
  const text = await row.innerText();
  if (!/pushed/.test(text)) throw new Error(`the upload failed: ${text}`);
  result.upload_s = (Date.now() - start) / 1000;
}
await browser.close();
console.log(JSON.stringify(result));
