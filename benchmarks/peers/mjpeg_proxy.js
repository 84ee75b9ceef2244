// Peer for benchmarks/fanout.py: npm mjpeg-proxy (installed by fanout.py into ./node_modules, gitignored)
// behind Node's own http server, the few lines of glue its README shows (it uses express; plain http
// routes the same way and adds nothing per frame). One MjpegProxy per camera: with --upstream given
// once per camera, camera k (from 0) is served on /cam/k/stream, the first also on /stream, as the
// Python baselines do (baselines/common.py camera_index).
//
//   node benchmarks/peers/mjpeg_proxy.js --upstream http://127.0.0.1:8080/stream [--upstream ...] --port 9000
'use strict';
const http = require('http');
const { MjpegProxy } = require('mjpeg-proxy');

const upstreams = [];
let host = '127.0.0.1';
let port = 0;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  if (argv[i] === '--upstream') upstreams.push(argv[i + 1]);
  else if (argv[i] === '--port') port = Number(argv[i + 1]);
  else if (argv[i] === '--host') host = argv[i + 1];
  else { console.error('unknown argument ' + argv[i]); process.exit(2); }
}
if (!upstreams.length || !port) { console.error('need --upstream URL and --port N'); process.exit(2); }
const proxies = upstreams.map((url) => new MjpegProxy(url));

function camera(path) {
  path = path.split('?')[0];
  if (!path.endsWith('/stream')) return -1;
  const m = /\/cam\/(\d+)\/stream$/.exec(path);
  if (!m) return 0;
  const k = Number(m[1]);
  return k < proxies.length ? k : -1;
}

const server = http.createServer((req, res) => {
  const k = camera(req.url);
  if (k < 0) { res.writeHead(404, { 'Content-Length': '0' }); res.end(); return; }
  proxies[k].proxyRequest(req, res);
});
server.listen({ host, port, backlog: 512 }, () => console.log('mjpeg-proxy on http://' + host + ':' + port));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
