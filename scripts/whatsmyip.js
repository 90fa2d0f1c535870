#!/usr/bin/env node
// whatsmyip.js - the tiny web server of the lab (runs on the "web" and "lan" hosts).
//
// Plain Node, no build step, no dependencies:   node scripts/whatsmyip.js --port 80
//
//   GET /          -> "<your address>\n": the source address this server saw. Through a
//                     VPN with NAT this shows the VPN server's address, not yours.
//   GET /bytes/N   -> N bytes of deterministic data (byte i = i % 251), to check transfers.
//                     251 is prime, so a lost or repeated chunk shifts the pattern visibly.
//   GET /hello     -> a short HTML page containing "minivpn-secret-page", a string you
//                     can look for in a packet capture (is the tunnel really encrypted?).
//   POST /sha256   -> "<sha256 of the request body>  <bytes>\n", to check uploads:
//                     curl --data-binary @file http://.../sha256 against sha256sum file.
//
// It logs one line per request to stdout.
'use strict';
const crypto = require('crypto');
const http = require('http');

const MAX_BYTES = 1 << 30; // 1 GiB: enough for any transfer check, bounded against typos

function parseArgs(argv) {
  const opts = { port: 80, host: '0.0.0.0' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') opts.port = Number(argv[++i]);
    else if (a === '--host') opts.host = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log('usage: node whatsmyip.js [--port 80] [--host 0.0.0.0]');
      process.exit(0);
    } else {
      console.error(`whatsmyip: unknown argument "${a}"`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) {
    console.error('whatsmyip: --port must be an integer 1..65535');
    process.exit(2);
  }
  return opts;
}

// The remote address without the "::ffff:" that dual-stack sockets put before IPv4 addresses.
function remoteOf(req) {
  return (req.socket.remoteAddress || '?').replace(/^::ffff:/, '');
}

// Stream N bytes in 64 KiB chunks so a big download never sits in memory at once.
function sendBytes(res, n) {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': n });
  let sent = 0;
  const pump = () => {
    while (sent < n) {
      const len = Math.min(65536, n - sent);
      const chunk = Buffer.allocUnsafe(len);
      for (let i = 0; i < len; i++) chunk[i] = (sent + i) % 251;
      sent += len;
      if (!res.write(chunk)) return res.once('drain', pump); // wait until the socket catches up
    }
    res.end();
  };
  pump();
}

const HELLO =
  '<!doctype html>\n<html><head><title>minivpn lab</title></head>\n' +
  '<body><p>Hello from the lab web server: minivpn-secret-page</p></body></html>\n';

function handle(req, res) {
  const remote = remoteOf(req);
  const path = (req.url || '/').split('?')[0];
  let status = 200;
  let length = 0;
  const reply = (code, type, body) => {
    status = code;
    length = Buffer.byteLength(body);
    res.writeHead(code, { 'Content-Type': type, 'Content-Length': length });
    res.end(body);
  };

  const bytes = /^\/bytes\/(\d{1,10})$/.exec(path);
  if (path === '/sha256' && req.method === 'POST') return hashUpload(req, res, remote);
  if (req.method !== 'GET' && req.method !== 'HEAD') reply(405, 'text/plain', 'only GET (and POST /sha256)\n');
  else if (path === '/') reply(200, 'text/plain', remote + '\n');
  else if (path === '/hello') reply(200, 'text/html', HELLO);
  else if (bytes && Number(bytes[1]) <= MAX_BYTES) {
    length = Number(bytes[1]);
    sendBytes(res, length);
  } else if (bytes) reply(400, 'text/plain', `at most ${MAX_BYTES} bytes\n`);
  else reply(404, 'text/plain', 'not found\n');

  console.log(`${new Date().toISOString()} ${remote} ${req.method} ${path} ${status} ${length}`);
}

// Hashes the body as it streams in (an upload is never held in memory), bounded by MAX_BYTES.
function hashUpload(req, res, remote) {
  const h = crypto.createHash('sha256');
  let n = 0;
  req.on('data', (chunk) => {
    n += chunk.length;
    if (n > MAX_BYTES) req.destroy();
    else h.update(chunk);
  });
  req.on('end', () => {
    const body = `${h.digest('hex')}  ${n}\n`;
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
    res.end(body);
    console.log(`${new Date().toISOString()} ${remote} POST /sha256 200 ${n}`);
  });
}

const opts = parseArgs(process.argv.slice(2));
const server = http.createServer(handle);
server.on('error', (err) => {
  console.error(`whatsmyip: ${err.message}`);
  process.exit(1);
});
server.listen(opts.port, opts.host, () => {
  // The lab waits for this line before it says the host is ready.
  console.log(`whatsmyip listening on ${opts.host}:${opts.port}`);
});
// Stop cleanly when the lab tears down.
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
