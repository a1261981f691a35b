// A loopback proxy that adds `Authorization: Bearer $CTXGUARD_PROXY_TOKEN` to every
// request and forwards it, headers (Host and Origin included) and streams untouched,
// to $CTXGUARD_PROXY_TARGET. The MCP conformance suite cannot send credentials; this
// lets it test a server that (rightly) has no unauthenticated mode.
import http from "node:http";

const target = new URL(process.env.CTXGUARD_PROXY_TARGET);
const token = process.env.CTXGUARD_PROXY_TOKEN;
const port = Number(process.env.CTXGUARD_PROXY_PORT || 0);

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const upstream = http.request(
    { hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers },
    (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    },
  );
  upstream.on("error", (e) => {
    res.writeHead(502, { "content-type": "text/plain" });
    res.end(String(e));
  });
  req.pipe(upstream);
  res.on("close", () => upstream.destroy());
});

server.listen(port, "127.0.0.1", () => {
  console.log(`proxy listening on http://127.0.0.1:${server.address().port}`);
});
