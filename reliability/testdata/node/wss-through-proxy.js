// Opens a WebSocket to a wss:// URL through an HTTP proxy as Node.js apps
// do (ws with https-proxy-agent), sends one message and prints the echo.
// Usage: node wss-through-proxy.js WSS_URL PROXY_URL (trust the proxy's
// CA with NODE_EXTRA_CA_CERTS).
const WebSocket = require('ws');
const { HttpsProxyAgent } = require('https-proxy-agent');

const [url, proxy] = process.argv.slice(2);
const ws = new WebSocket(url, { agent: new HttpsProxyAgent(proxy) });
ws.on('open', () => ws.send('hello from node'));
ws.on('message', (data) => {
  console.log(String(data));
  ws.close(1000);
});
ws.on('close', () => process.exit(0));
ws.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
