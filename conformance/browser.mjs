// Plays the person at the browser for the suite's `authorization` command: reads the
// suite's output on stdin (passing it through), and when the suite prints the
// authorization URL, signs in on ctxguard's login page as $CTXGUARD_USER /
// $CTXGUARD_PASSWORD, allows access on the consent page and follows the redirect to
// the suite's callback listener, as a browser would. Only plain fetch: no browser.
import readline from "node:readline";

const user = process.env.CTXGUARD_USER;
const password = process.env.CTXGUARD_PASSWORD;
const authorizeEndpoint = process.env.CTXGUARD_AUTHORIZE; // <issuer>/authorize

const field = (html, name) => {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!m) throw new Error(`no ${name} field in page:\n${html}`);
  return m[1].replaceAll("&amp;", "&").replaceAll("&quot;", '"').replaceAll("&#x27;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">");
};

// The cookies a browser would keep for this one sign-in.
const jar = new Map();
const keep = (res) => {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(";");
    const eq = pair.indexOf("=");
    jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
};
const cookies = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");

async function go(url, form) {
  const res = await fetch(url, {
    method: form ? "POST" : "GET",
    redirect: "manual",
    headers: {
      cookie: cookies(),
      ...(form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
    },
    body: form ? new URLSearchParams(form).toString() : undefined,
  });
  keep(res);
  return res;
}

async function signIn(authorizationUrl) {
  const login = await go(authorizationUrl);
  if (login.status !== 200) throw new Error(`login page: HTTP ${login.status}: ${await login.text()}`);
  const loginPage = await login.text();
  const after = await go(new URL("login", authorizationUrl), {
    csrf: field(loginPage, "csrf"),
    request: field(loginPage, "request"),
    username: user,
    password,
  });
  if (after.status !== 303) throw new Error(`sign-in: HTTP ${after.status}: ${await after.text()}`);
  const consent = await go(new URL(after.headers.get("location"), authorizationUrl));
  const consentPage = await consent.text();
  if (!consentPage.includes("Allow access?")) throw new Error(`no consent page:\n${consentPage}`);
  const done = await go(new URL("consent", authorizationUrl), {
    csrf: field(consentPage, "csrf"),
    request: field(consentPage, "request"),
    decision: "allow",
  });
  if (done.status !== 303) throw new Error(`consent: HTTP ${done.status}: ${await done.text()}`);
  // The redirect goes to the suite's callback listener.
  const callback = await fetch(done.headers.get("location"));
  console.log(`[browser] signed in and allowed; callback answered HTTP ${callback.status}`);
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  console.log(line);
  if (line.startsWith(authorizeEndpoint + "?")) {
    signIn(line.trim()).catch((e) => {
      console.log(`[browser] ${e.stack ?? e}`);
      process.exitCode = 1;
    });
  }
}
