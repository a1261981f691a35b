// The official MCP TypeScript SDK client against ctxguard with a bearer API key:
// connect, list tools, call them, read a resource, and be refused with a bad key.
// Usage: node flow.mjs <mcp-url> <api-key>
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, key] = process.argv.slice(2);

async function connect(token) {
  const client = new Client({ name: "ts-sdk-check", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

const client = await connect(key);
const tools = (await client.listTools()).tools.map((t) => t.name).sort();
assert.deepEqual(tools, ["context_append", "context_create", "context_delete", "context_get", "context_list"]);

const created = await client.callTool({ name: "context_create", arguments: { session: { history: [{ role: "user", message: "from ts" }] } } });
assert.equal(created.isError, false, JSON.stringify(created));
const id = created.structuredContent.context_id;
const appended = await client.callTool({ name: "context_append", arguments: { context_id: id, messages: [{ role: "assistant", message: "ok" }] } });
assert.equal(appended.structuredContent.version, 2);
assert.equal(appended.structuredContent.history_length, 2);
const got = await client.callTool({ name: "context_get", arguments: { context_id: id } });
assert.deepEqual(got.structuredContent.session.history.map((m) => m.message), ["from ts", "ok"]);
const window = await client.callTool({ name: "context_get", arguments: { context_id: id, after: 1, limit: 5 } });
assert.deepEqual(window.structuredContent.session.history.map((m) => m.message), ["ok"]);
assert.equal(window.structuredContent.history_start, 2);
const bad = await client.callTool({ name: "context_get", arguments: { context_id: "nope" } });
assert.equal(bad.isError, true);
const resource = await client.readResource({ uri: `context://${id}` });
assert.ok(resource.contents[0].text.includes(id));
await client.close();

// Refused for the right reason: a 401 from the server, not any failure at all.
let refusal;
try {
  await connect("ctxg_not-a-real-key");
} catch (e) {
  refusal = e;
}
assert.ok(refusal, "a bad key must be refused");
assert.ok(refusal.code === 401 || /\b401\b/.test(String(refusal.message)), `refused with a 401, not: ${refusal}`);
console.log(`typescript mcp client flow: ok (context ${id})`);
