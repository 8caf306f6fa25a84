// Administration and a case's lifecycle in the browser: a user created, disabled and
// enabled; an API token created (its value shown once) and revoked; the audit log listed
// and its hash chain verified; a case's members granted, changed and removed; the case
// archived and restored.

import { accessible, check, screen } from "./lib.mjs";

const USER = "analyst-two";
const PASSWORD = "a long enough password 42";

export async function adminFlow(page, base) {
  // Users.
  await page.getByRole("link", { name: "Admin", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Administration" }).waitFor();
  const create = page.getByRole("form", { name: "Create a user" });
  await create.getByLabel("User name").fill(USER);
  await create.getByLabel("Display name").fill("Analyst <b>Two</b>");
  await create.getByLabel("Password").fill(PASSWORD);
  await create.getByRole("button", { name: "Create user" }).click();
  const users = page.getByRole("table", { name: "Users" });
  await users.getByRole("cell", { name: USER, exact: true }).waitFor();
  await users.getByRole("cell", { name: "Analyst <b>Two</b>", exact: true }).waitFor();
  await users.getByRole("button", { name: `Disable ${USER}` }).click();
  await page.getByLabel("Include disabled users").check();
  await users.getByRole("button", { name: `Enable ${USER}` }).click();
  await users.getByRole("button", { name: `Disable ${USER}` }).waitFor();
  await accessible(page, "admin: users");
  await screen(page, "admin");

  // API tokens: the value once, then revoked.
  await page.getByRole("navigation", { name: "Administration" }).getByRole("link", { name: "API tokens" }).click();
  await page.getByLabel("Token name").fill("e2e-browser");
  await page.getByRole("button", { name: "Create token" }).click();
  const value = (await page.locator(".token-value").innerText()).trim();
  check(value.length >= 32, `the token value shown: ${value}`);
  const tokens = page.getByRole("table", { name: "API tokens" });
  const prefix = (await tokens.locator("tr", { hasText: "e2e-browser" }).locator("td").nth(1).innerText()).replace("…", "");
  check(prefix.length > 0 && value.startsWith(prefix), `the token ${value} does not start with its listed prefix ${prefix}`);
  await accessible(page, "admin: API tokens");
  await screen(page, "tokens");
  await tokens.getByRole("button", { name: "Revoke e2e-browser" }).click();
  await tokens.locator("tr", { hasText: "e2e-browser" }).getByText(/^revoked /).waitFor();

  // The audit log: the calls above are in it; the chain verifies.
  await page.getByRole("navigation", { name: "Administration" }).getByRole("link", { name: "Audit log" }).click();
  const audit = page.getByRole("table", { name: "Audit log" });
  await audit.getByRole("cell", { name: "gateway.v1.AdminService/CreateUser" }).first().waitFor();
  await page.getByRole("button", { name: "Verify the hash chain" }).click();
  const verdict = await page.getByText(/^(Intact|Broken)/).innerText();
  check(/^Intact: [\d,]+ records verified\.$/.test(verdict), `the audit verification: ${verdict}`);
  await accessible(page, "admin: audit log");
  await screen(page, "audit");

  // A case: members granted, changed, removed; archived and restored.
  await page.goto(`${base}/#/cases`);
  await page.getByLabel("New case").fill("archive me");
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("link", { name: "archive me", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "archive me" }).waitFor();
  await page.getByText("Members and archive").click();
  const grant = page.getByRole("form", { name: "Give a user a role on this case" });
  await grant.getByLabel("User name").fill(USER);
  await grant.getByRole("button", { name: "Grant" }).click();
  const members = page.getByRole("table", { name: "Members of the case" });
  await members.getByRole("button", { name: `Remove ${USER} (analyst)` }).waitFor();
  await members.getByLabel(`Case role of ${USER}`).selectOption({ label: "viewer" });
  await members.getByRole("button", { name: `Remove ${USER} (viewer)` }).click();
  await members.getByRole("cell", { name: USER, exact: true }).waitFor({ state: "detached" });
  await accessible(page, "case members and archive");

  await page.getByRole("button", { name: "Archive this case…" }).click();
  await page.getByRole("alertdialog").getByRole("button", { name: "Archive", exact: true }).click();
  await page.getByText("The case is archived: no evidence can be added.").waitFor({ timeout: 60_000 });
  await page.getByRole("button", { name: "Restore this case" }).click();
  await page.getByRole("heading", { name: "Add evidence" }).waitFor({ timeout: 120_000 });
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Cases" }).click();
  await page.getByRole("heading", { level: 1, name: "Cases" }).waitFor();
}
