// Drives wasq's web dashboard in headless Chromium with real clicks.
//
//   node dash.test.mjs <url> <queue> <archived task id>
//
// The url may carry `?token=` (a dashboard started with --auth-token).
//
// MODE=readonly: checks that every action is disabled.
// SHOTS=<dir>:   saves screenshots of the main views there.
// CHROMIUM:      the browser (default /usr/bin/chromium, Debian's package).
//
// Exits non-zero, naming the step, when something is not as expected.

import { chromium } from "playwright-core";

const [url, queue, taskId] = process.argv.slice(2);
const shots = process.env.SHOTS;
const readOnly = process.env.MODE === "readonly";

function check(ok, what) {
  if (!ok) {
    console.error(`dashboard test failed: ${what}`);
    process.exit(1);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 960 } });
  page.setDefaultTimeout(15000);
  page.on("dialog", (dialog) => dialog.accept());
  const count = async (state) =>
    (await page.textContent(`[data-testid="count-${queue}-${state}"]`)).trim();
  const waitCount = (state, value) =>
    page.waitForFunction(
      ([q, s, v]) => document.querySelector(`[data-testid="count-${q}-${s}"]`)?.textContent.trim() === v,
      [queue, state, value],
    );

  await page.goto(url);
  await page.waitForSelector(`tr[data-queue="${queue}"]`);
  check(!page.url().includes("token="), "the auth token left the address bar");
  check((await count("archived")) === "1", "one archived task is shown");
  check((await count("pending")) === "0", "no pending task is shown");

  // Open the queue.
  await page.click(`tr[data-queue="${queue}"] td`);
  await page.waitForSelector("#queue-panel");
  await page.click('button[data-state="archived"]');
  await page.waitForSelector(`tr[data-task="${taskId}"]`);

  if (readOnly) {
    check(await page.isDisabled("#pause"), "pause is disabled when read-only");
    check(
      await page.isDisabled(`button[data-act="run"][data-id="${taskId}"]`),
      "run is disabled when read-only",
    );
    console.log("dashboard read-only ok");
    process.exit(0);
  }

  // Pause the queue: its state turns to paused.
  await page.click("#pause");
  await page.waitForFunction(
    (q) => document.querySelector(`[data-testid="state-${q}"]`)?.textContent === "paused",
    queue,
  );

  // The task's detail.
  await page.click(`tr[data-task="${taskId}"] td`);
  await page.waitForSelector("#task-detail");
  check((await page.textContent("#task-detail")).includes(taskId), "the detail shows the task");
  if (shots) await page.screenshot({ path: `${shots}/dashboard-queue.png`, fullPage: true });

  // Run the archived task: the counts change.
  await page.click(`button[data-act="run"][data-id="${taskId}"]`);
  await waitCount("archived", "0");
  await waitCount("pending", "1");
  if (shots) {
    await page.click('button[data-state="pending"]');
    await page.waitForSelector(`tr[data-task="${taskId}"]`);
    await page.screenshot({ path: `${shots}/dashboard-queues.png`, fullPage: true });
  }

  // The other views render.
  for (const [view, text] of [
    ["servers", "Servers"],
    ["cluster", "Key slot"],
    ["modules", "Task types"],
  ]) {
    await page.click(`nav a[data-view="${view}"]`);
    await page.waitForFunction((t) => document.querySelector("#main").textContent.includes(t), text);
    if (shots) await page.screenshot({ path: `${shots}/dashboard-${view}.png`, fullPage: true });
  }
  console.log("dashboard ok");
} finally {
  await browser.close();
}
