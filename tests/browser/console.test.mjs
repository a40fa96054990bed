// Walks the Berth console in Debian's chromium (playwright-core), as an
// administrator, as a user with one grant and as a user with none.
// tests/integration/test_console.py sets the stage and passes it in
// BERTH_CONSOLE_TEST (JSON); this script asserts what each page shows and
// prints, as its last line, JSON of what the server side should check.

import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.env.BERTH_CONSOLE_TEST);
const results = {};
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const errors = [];

async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.setDefaultTimeout(20000);
  return page;
}

let current = null;
async function step(name, fn) {
  process.stdout.write(`- ${name}\n`);
  try {
    await fn();
  } catch (e) {
    if (current) await current.screenshot({ path: join(cfg.screenshots, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
    throw new Error(`${name}: ${e.message}`);
  }
}

const shot = (page, name) => page.screenshot({ path: join(cfg.screenshots, `${name}.png`), fullPage: true });
const go = async (page, hash) => {
  await page.goto(`${cfg.url}/console/#/${hash}`);
  await page.locator("main h1").first().waitFor();
};
const main = (page) => page.locator("main");

async function signIn(page, [user, password]) {
  await page.goto(`${cfg.url}/console/`);
  await page.getByLabel("User (user@tenant, tenant, or region@AK)").fill(user);
  await page.getByLabel("Password or login key").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Organizations", level: 1 }).waitFor();
}

/// Polls `check` (which may reload the page) until it is true.
async function until(check, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((ok) => setTimeout(ok, 500));
  }
}

// --- the administrator -------------------------------------------------------------
const admin = await newPage();
current = admin;

await step("a wrong password is refused on the page", async () => {
  await admin.goto(`${cfg.url}/console/`);
  await admin.getByRole("heading", { name: "Sign in" }).waitFor();
  await shot(admin, "signin");
  await admin.getByLabel("User (user@tenant, tenant, or region@AK)").fill("acme");
  await admin.getByLabel("Password or login key").fill("wrong");
  await admin.getByRole("button", { name: "Sign in" }).click();
  await admin.getByRole("alert").filter({ hasText: "Sign-in failed" }).waitFor();
});

await step("the administrator signs in and creates an organization", async () => {
  await signIn(admin, cfg.admin);
  await admin.getByLabel("New organization name").fill("webui");
  await admin.getByRole("button", { name: "Create", exact: true }).click();
  await main(admin).getByRole("link", { name: "webui", exact: true }).waitFor();
  await shot(admin, "orgs");
});

await step("archives upload with a progress bar, and a bad one is named", async () => {
  await go(admin, "upload");
  await admin.getByLabel("Into organization").selectOption("webui");
  await admin.getByLabel("Archives").setInputFiles([cfg.archives.docker, cfg.archives.oci, cfg.archives.broken]);
  await admin.getByRole("button", { name: "Upload" }).click();
  const row = (file) => admin.locator(`li[data-file="${file}"]`);
  await row("app.tar").locator(".state.done").waitFor({ timeout: 60000 });
  await row("layout.tar").locator(".state.done").waitFor({ timeout: 60000 });
  await row("broken.tar").locator(".state.error").waitFor();
  assert.match(await row("app.tar").locator(".state").innerText(), /webui\/app:v1/);
  assert.match(await row("layout.tar").locator(".state").innerText(), /webui\/layout:v1/);
  assert.match(await row("broken.tar").locator(".state").innerText(), /not a tar archive/);
  assert.equal(await row("app.tar").locator("progress").getAttribute("value"), "100");
  assert.equal(await row("app.tar").locator("progress").getAttribute("aria-label"), "Progress of app.tar");
  await shot(admin, "upload");
});

await step("the repository shows its tags with digests, sizes and pull commands", async () => {
  await go(admin, "repo/webui/app");
  const tags = main(admin).locator("table").first();
  await tags.getByRole("cell", { name: "v1", exact: true }).waitFor();
  await tags.locator("details.pull summary").first().click();
  const text = await tags.innerText();
  assert.match(text, /sha256:/);
  assert.match(text, /application\/vnd\.oci\.image\.manifest\.v1\+json/);
  assert.ok(text.includes(`docker pull ${cfg.host}/webui/app:v1`), text);
  assert.ok(text.includes(`podman pull ${cfg.host}/webui/app:v1`), text);
  assert.match(text, /never/);
  await shot(admin, "repo");
});

await step("a multi-arch image shows its platforms and its signature as a tree", async () => {
  await go(admin, "repo/shared/multi");
  await admin.getByRole("button", { name: "Show contents of v1" }).click();
  const tree = main(admin).locator(".tree > div > ul").first();
  await tree.waitFor();
  await until(async () => (await tree.innerText()).includes("linux/arm64"));
  const text = await tree.innerText();
  assert.match(text, /linux\/amd64/);
  assert.match(text, /application\/vnd\.dev\.cosign\.simplesigning\.v1\+json/);
  await shot(admin, "tree");
});

await step("a webhook set on the page delivers a push made through the console", async () => {
  await go(admin, "webhooks");
  await admin.getByLabel("Organization", { exact: true }).selectOption("webui");
  await admin.getByLabel("Name", { exact: true }).fill("to-receiver");
  await admin.getByLabel("Address (URL)").fill(cfg.receiver);
  await admin.getByRole("button", { name: "Create", exact: true }).click();
  await main(admin).getByRole("cell", { name: "to-receiver", exact: true }).waitFor();
  await shot(admin, "webhooks");
  // A push with the session: tag v2 of the uploaded image.
  const status = await admin.evaluate(async () => {
    const accept = { Accept: "application/vnd.oci.image.manifest.v1+json" };
    const m = await fetch("/v2/webui/app/manifests/v1", { headers: accept });
    const body = await m.arrayBuffer();
    const csrf = (await (await fetch("/console/api/session")).json()).csrf;
    const r = await fetch("/v2/webui/app/manifests/v2", {
      method: "PUT", body, headers: { "Content-Type": m.headers.get("Content-Type"), "X-Berth-CSRF": csrf },
    });
    return r.status;
  });
  assert.equal(status, 201);
  await main(admin).getByRole("link", { name: "Deliveries" }).click();
  await until(async () => {
    await admin.getByRole("button", { name: "Refresh" }).click();
    await admin.waitForTimeout(300);
    return /PUSH_ARTIFACT[\s\S]*Succeed/.test(await main(admin).innerText());
  }, 60000);
  await shot(admin, "deliveries");
});

await step("an aging rule's dry run says what it would remove", async () => {
  await go(admin, "aging/webui/app");
  await admin.getByLabel("Rule", { exact: true }).selectOption("tag_rule");
  await admin.getByLabel("Keep only the newest (tags)").fill("1");
  await admin.getByRole("button", { name: "Create", exact: true }).click();
  await main(admin).getByRole("link", { name: "Dry run" }).first().waitFor();
  await main(admin).getByRole("link", { name: "Dry run" }).first().click();
  await main(admin).getByRole("heading", { name: "Would remove" }).waitFor();
  const text = await main(admin).innerText();
  const removed = text.split("Would remove")[1].split("Would keep")[0];
  const kept = text.split("Would keep")[1];
  assert.match(removed, /v1|v2/);
  assert.match(kept, /v1|v2/);
  await shot(admin, "aging");
});

await step("an image trigger is set on the repository page, then disabled", async () => {
  await go(admin, "repo/webui/app");
  const panel = main(admin).getByRole("region", { name: "Image triggers (Kubernetes)" });
  await panel.getByLabel("Name", { exact: true }).fill("deploy-web");
  await panel.getByLabel("Cluster", { exact: true }).selectOption("prod");
  await panel.getByLabel("Workload", { exact: true }).fill("web");
  await panel.getByRole("button", { name: "Create", exact: true }).click();
  await main(admin).getByRole("cell", { name: "deploy-web", exact: true }).waitFor();
  await main(admin).getByRole("button", { name: "Disable deploy-web" }).click();
  await main(admin).getByRole("button", { name: "Enable deploy-web" }).waitFor();
  await shot(admin, "triggers");
});

await step("immutable rules, sync, garbage collection and usage", async () => {
  await go(admin, "immutable");
  await admin.getByLabel("Organization", { exact: true }).selectOption("webui");
  await admin.getByRole("button", { name: "Create", exact: true }).click();
  await main(admin).getByRole("cell", { name: "v*", exact: true }).waitFor();
  await shot(admin, "immutable");
  await go(admin, "sync/webui/app");
  await main(admin).getByRole("heading", { name: "Sync jobs" }).waitFor();
  await shot(admin, "sync");
  await go(admin, "gc");
  await admin.getByRole("button", { name: "Run now" }).click();
  await until(async () => /Pending|Running|Success/.test(await main(admin).innerText()));
  await shot(admin, "gc");
  await go(admin, "usage");
  assert.equal(await main(admin).locator("svg.chart").count(), 2);
  assert.match(await main(admin).innerText(), /webui/);
  await shot(admin, "usage");
});

await step("the audit log filters by kind", async () => {
  await go(admin, "audit");
  await admin.getByLabel("Kind").selectOption("create");
  await admin.getByRole("button", { name: "Filter" }).click();
  await until(async () => (await main(admin).innerText()).includes("POST /v2/manage/namespaces"));
  const text = await main(admin).innerText();
  assert.ok(!text.includes("DELETE /"), "a create filter shows no deletes");
  await shot(admin, "audit");
});

await step("an access key's secret is shown once", async () => {
  await go(admin, "keys");
  await admin.getByRole("button", { name: "Create access key" }).click();
  await admin.locator("#new-sk").waitFor();
  results.new_ak = await admin.locator("#new-ak").innerText();
  assert.ok((await admin.locator("#new-sk").innerText()).length >= 20);
  await shot(admin, "keys");
  await go(admin, "orgs");
  await go(admin, "keys");
  assert.equal(await admin.locator("#new-sk").count(), 0);
  assert.ok((await main(admin).innerText()).includes(results.new_ak));
});

await step("users, groups, policies and network access for administrators", async () => {
  await go(admin, "users");
  await admin.getByLabel("Name", { exact: true }).fill("temp");
  await admin.getByLabel("Password").fill("temp-password-1");
  await admin.getByRole("button", { name: "Create", exact: true }).click();
  await main(admin).getByRole("cell", { name: "temp", exact: true }).waitFor();
  await shot(admin, "users");
  await go(admin, "groups");
  await shot(admin, "groups");
  await go(admin, "policies");
  await shot(admin, "policies");
  await go(admin, "network");
  assert.equal(await admin.getByLabel("Access from outside the internal networks").isChecked(), true);
  await shot(admin, "network");
});

await step("the administrator grants dev read access to webui", async () => {
  await go(admin, "orgs/webui");
  await admin.getByLabel("User", { exact: true }).selectOption({ label: "dev" });
  await admin.getByLabel("Permission", { exact: true }).selectOption("1");
  await admin.getByRole("button", { name: "Grant" }).click();
  await main(admin).getByRole("cell", { name: "dev", exact: true }).waitFor();
});

// --- a user with one grant -----------------------------------------------------------
const dev = await newPage();
current = dev;

await step("dev sees the organization it was granted, read only", async () => {
  await signIn(dev, cfg.dev);
  await main(dev).getByRole("link", { name: "webui", exact: true }).waitFor();
  assert.equal(await dev.getByRole("button", { name: "Create", exact: true }).count(), 0);
  assert.equal(await main(dev).getByRole("button", { name: /Delete/ }).count(), 0);
  await shot(dev, "dev-orgs");
  await go(dev, "repo/webui/app");
  await main(dev).getByRole("cell", { name: "v1", exact: true }).waitFor();
  assert.equal(await main(dev).getByRole("button", { name: /Delete/ }).count(), 0);
  assert.equal(await dev.locator("nav").getByRole("link", { name: "Audit log" }).count(), 0);
});

await step("revoking the grant changes dev's view", async () => {
  current = admin;
  await go(admin, "orgs/webui");
  await admin.getByRole("button", { name: "Revoke dev" }).click();
  await until(async () => (await main(admin).getByRole("cell", { name: "dev", exact: true }).count()) === 0);
  current = dev;
  await go(dev, "orgs");
  await until(async () => {
    await go(dev, "orgs");
    return (await main(dev).getByRole("link", { name: "webui", exact: true }).count()) === 0;
  });
  await go(dev, "repo/webui/app");
  assert.match(await main(dev).innerText(), /Error/);
});

// --- a user with no rights -------------------------------------------------------------
const nobody = await newPage();
current = nobody;

await step("a user without rights sees neither data nor buttons", async () => {
  await signIn(nobody, cfg.nobody);
  assert.match(await main(nobody).innerText(), /Nothing here yet/);
  assert.equal(await nobody.getByRole("button", { name: "Create", exact: true }).count(), 0);
  for (const hidden of ["Audit log", "Users", "Groups", "Policies", "Garbage collection", "Network access"]) {
    assert.equal(await nobody.locator("nav").getByRole("link", { name: hidden }).count(), 0, hidden);
  }
  await shot(nobody, "nobody-orgs");
  await go(nobody, "audit");
  await main(nobody).getByText("You do not have access to this page.").waitFor();
  await go(nobody, "repos");
  assert.match(await main(nobody).innerText(), /Nothing here yet/);
  const direct = await nobody.evaluate(async () => (await fetch("/berth/v1/tenants/acme/audit")).status);
  assert.equal(direct, 403);
  const pull = await nobody.evaluate(async () => (await fetch("/v2/webui/app/manifests/v1")).status);
  assert.equal(pull, 403);
});

// --- CSRF, locale, narrow screens, accessibility -------------------------------------------
current = admin;

await step("changes without the session's CSRF token are refused", async () => {
  const codes = await admin.evaluate(async () => {
    const post = (headers) => fetch("/v2/manage/namespaces", {
      method: "POST", body: JSON.stringify({ namespace: "csrf-browser" }), headers: { "Content-Type": "application/json", ...headers },
    });
    const none = await post({});
    const wrong = await post({ "X-Berth-CSRF": "00" });
    const push = await fetch("/v2/webui/app/blobs/uploads/", { method: "POST" });
    const out = await fetch("/console/api/session", { method: "DELETE" });
    return [none.status, (await none.json()).errorMsg, wrong.status, push.status, out.status];
  });
  assert.deepEqual([codes[0], codes[2], codes[3], codes[4]], [403, 403, 403, 403]);
  assert.match(codes[1], /CSRF/);
});

await step("the pages speak Chinese too", async () => {
  await go(admin, "orgs");
  await admin.getByLabel("Language").selectOption("zh");
  await admin.locator("nav").getByRole("link", { name: "组织管理" }).waitFor();
  await main(admin).getByRole("heading", { name: "组织管理" }).waitFor();
  assert.equal(await admin.evaluate(() => document.documentElement.lang), "zh-CN");
  await shot(admin, "zh-orgs");
  await admin.getByLabel("语言").selectOption("en");
  await admin.locator("nav").getByRole("link", { name: "Organizations" }).waitFor();
});

await step("every control is labelled and focus goes to each page's heading", async () => {
  for (const page of ["orgs", "repos", "upload", "webhooks", "aging/webui/app", "immutable", "audit", "keys", "users", "network"]) {
    await go(admin, page);
    const unlabelled = await admin.evaluate(() => [...document.querySelectorAll("input, select, textarea")]
      .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-label"))
      .map((el) => el.name || el.outerHTML.slice(0, 60)));
    assert.deepEqual(unlabelled, [], page);
    assert.equal(await admin.evaluate(() => document.activeElement.tagName), "H1", page);
  }
});

const narrow = await newPage({ width: 375, height: 800 });
current = narrow;

await step("narrow screens get one column and no sideways scrolling", async () => {
  await signIn(narrow, cfg.admin);
  await go(narrow, "repos");
  await narrow.locator("nav").getByRole("link", { name: "Repositories" }).waitFor();
  const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than the screen`);
  await shot(narrow, "narrow-repos");
});

// --- the session ends --------------------------------------------------------------------------
current = admin;

await step("an expired session sends the page back to sign-in", async () => {
  writeFileSync(join(cfg.markers, "expire-now"), "1");
  await until(() => existsSync(join(cfg.markers, "expired")));
  await admin.locator("nav").getByRole("link", { name: "Repositories" }).click();
  await admin.getByRole("heading", { name: "Sign in" }).waitFor();
  await admin.getByText("Your session has ended. Sign in again.").waitFor();
});

await step("signing out ends the session", async () => {
  await signIn(admin, cfg.admin);
  await admin.getByRole("button", { name: "Sign out" }).click();
  await admin.getByRole("heading", { name: "Sign in" }).waitFor();
  const status = await admin.evaluate(async () => (await fetch("/console/api/session")).status);
  assert.equal(status, 401);
});

await browser.close();
assert.deepEqual(errors, [], "the pages threw");
console.log(JSON.stringify(results));
