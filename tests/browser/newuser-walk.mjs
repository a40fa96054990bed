import { chromium } from "playwright-core";
const [user, pw, prefix, lang, width] = process.argv.slice(2);
const URL = "http://127.0.0.1:5091";
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const ctx = await browser.newContext({ viewport: { width: +(width||1280), height: 900 }, locale: lang || "en-US" });
const page = await ctx.newPage();
page.setDefaultTimeout(15000);
page.on("pageerror", e => console.log("PAGEERROR", String(e)));
page.on("console", m => { if (m.type() === "error" || m.type()==="warning") console.log("CONSOLE", m.type(), m.text()); });
page.on("response", r => { if (r.status() >= 400) console.log("HTTP", r.status(), r.request().method(), r.url()); });
await page.goto(`${URL}/console/`);
await page.locator("main h1").first().waitFor();
await page.screenshot({ path: `/tmp/newuser/shots/${prefix}-signin.png`, fullPage: true });
await page.locator("input[name=username], #username, input[autocomplete=username]").first().fill(user);
await page.locator("input[type=password]").first().fill(pw);
await page.locator("form.signin button[type=submit]").click();
await page.waitForTimeout(1500);
const pages = process.env.PAGES ? process.env.PAGES.split(",") : ["orgs","repos","repo/team/hello","upload","webhooks","aging","immutable","sync","gc","usage","audit","keys","users","groups","policies","network"];
for (const p of pages) {
  await page.goto(`${URL}/console/#/${p}`);
  await page.waitForTimeout(1800);
  const h1 = await page.locator("main h1").first().innerText().catch(() => "(no h1)");
  const txt = (await page.locator("main").innerText()).replace(/\s+/g, " ").slice(0, 400);
  console.log(`PAGE ${p}: h1=${JSON.stringify(h1)} :: ${txt}`);
  // unlabelled controls
  const unl = await page.evaluate(() => [...document.querySelectorAll("main input, main select, main textarea, main button")].filter(el => {
    if (el.type === "hidden") return false;
    const lab = el.labels && el.labels.length; const aria = el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || el.getAttribute("title");
    const txt = el.tagName === "BUTTON" ? el.textContent.trim() : "";
    return !lab && !aria && !txt;
  }).map(el => el.outerHTML.slice(0, 120)));
  if (unl.length) console.log("  UNLABELLED", unl);
  await page.screenshot({ path: `/tmp/newuser/shots/${prefix}-${p.replace(/\//g,"_")}.png`, fullPage: true });
}
await browser.close();
