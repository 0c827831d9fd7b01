// Opens a page served from another origin in headless Chromium: the page
// (`attack_page` in tests/e2e/dashboard.rs) tries to act on wasq's web
// dashboard the ways a foreign page can, and this prints what each attempt
// got. Whether the queue was paused is checked in Redis by the Rust test.
//
//   node cross-origin.test.mjs <url of the foreign page>
//
// CHROMIUM: the browser (default /usr/bin/chromium, Debian's package).

import { chromium } from "playwright-core";

const [url] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(url);
  const attempts = await (await page.waitForFunction(() => window.attempts)).jsonValue();
  for (const attempt of attempts) console.log(attempt);
  console.log("cross-origin done");
} finally {
  await browser.close();
}
