// The HTML page comparing two analysed captures side by side: summary, bar charts (SVG),
// header tables and the byte map (drawn by the page's own script, src/lab/report/assets.ts).

import { CaptureAnalysis, DEFAULT_MAP_PACKETS, FlowCount, KIND_LABELS, KINDS, PacketInfo } from './analyze';
import { CSS, SCRIPT } from './assets';


export interface ReportOptions {
  title?: string;
  /** Short names for the two sides, e.g. 'plaintext tunnel' and 'DTLS tunnel'. */
  labelA?: string;
  labelB?: string;
  /** File names, shown under the labels. */
  fileA?: string;
  fileB?: string;
  /** How many packets the header tables and byte maps show; default 40. */
  tablePackets?: number;
  /** Bars drawn per chart at most; default 2000. */
  chartPackets?: number;
  /** Shown in the footer; default now. Fixed in tests. */
  generatedAt?: Date;
}

/** Escapes text for HTML element content and attribute values. */
export function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}


const fmtInt = (n: number) => n.toLocaleString('en-US');
const pct = (f: number) => `${(f * 100).toFixed(1)}%`;

/** A "nice" tick step (1, 2 or 5 times a power of ten) giving at most ~5 ticks up to max. */
function tickStep(max: number): number {
  if (max <= 0) return 1;
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

const CHART_W = 640;
const CHART_H = 210;
const M = { left: 48, right: 10, top: 12, bottom: 34 };

interface ChartSpec {
  side: 'a' | 'b';
  what: 'sizes' | 'entropy';
  packets: PacketInfo[];
  /** Bars the x axis has room for (the same on both sides, so they line up). */
  slots: number;
  yMax: number;
  yLabel: string;
  value: (p: PacketInfo) => number;
  tip: (p: PacketInfo) => string;
  /** Horizontal reference lines. */
  lines?: { y: number; label: string; cls: string }[];
  /** A short mark above each bar at this value (e.g. the highest value possible for the packet). */
  ceiling?: (p: PacketInfo) => number;
}

/** An SVG bar chart: one bar per packet, coloured by kind. */
function barChart(c: ChartSpec): string {
  const pw = CHART_W - M.left - M.right;
  const ph = CHART_H - M.top - M.bottom;
  const y = (v: number) => M.top + ph - (Math.min(v, c.yMax) / c.yMax) * ph;
  const parts: string[] = [];
  parts.push(
    `<svg class="chart ${c.what}" data-testid="${c.what}-${c.side}" data-bars="${c.packets.length}" viewBox="0 0 ${CHART_W} ${CHART_H}" width="${CHART_W}" height="${CHART_H}" role="img" aria-label="${esc(c.yLabel)} per packet">`,
  );
  // Y grid and ticks
  const step = tickStep(c.yMax);
  for (let v = 0; v <= c.yMax + 1e-9; v += step) {
    const yy = y(v).toFixed(1);
    parts.push(`<line class="grid" x1="${M.left}" x2="${CHART_W - M.right}" y1="${yy}" y2="${yy}"/>`);
    parts.push(`<text class="tick" x="${M.left - 5}" y="${yy}" text-anchor="end" dominant-baseline="middle">${fmtInt(Math.round(v * 100) / 100)}</text>`);
  }
  parts.push(`<text class="axis-label" transform="translate(12 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  // Bars
  const slot = pw / Math.max(c.slots, 1);
  const bw = slot > 3 ? slot * 0.8 : Math.max(slot, 0.6);
  for (const p of c.packets) {
    const v = c.value(p);
    const x = M.left + p.index * slot + (slot - bw) / 2;
    const top = y(v);
    const h = Math.max(M.top + ph - top, v > 0 ? 1 : 0);
    parts.push(
      `<rect class="bar k-${p.kind}" data-index="${p.index}" data-side="${c.side}" data-value="${Number(v.toFixed(3))}" x="${x.toFixed(2)}" y="${(M.top + ph - h).toFixed(2)}" width="${bw.toFixed(2)}" height="${h.toFixed(2)}"><title>${esc(c.tip(p))}</title></rect>`,
    );
    if (c.ceiling && p.length > 0) {
      const cy = y(c.ceiling(p)).toFixed(1);
      parts.push(`<line class="ceiling" x1="${x.toFixed(2)}" x2="${(x + bw).toFixed(2)}" y1="${cy}" y2="${cy}"/>`);
    }
  }
  for (const l of c.lines ?? []) {
    const yy = y(l.y).toFixed(1);
    parts.push(`<line class="${l.cls}" x1="${M.left}" x2="${CHART_W - M.right}" y1="${yy}" y2="${yy}"/>`);
    parts.push(`<text class="${l.cls}-label" x="${CHART_W - M.right - 2}" y="${(Number(yy) - 4).toFixed(1)}" text-anchor="end">${esc(l.label)}</text>`);
  }
  // X axis: packet numbers
  parts.push(`<line class="axis" x1="${M.left}" x2="${CHART_W - M.right}" y1="${M.top + ph}" y2="${M.top + ph}"/>`);
  const xstep = tickStep(c.slots);
  for (let i = 0; i < c.slots; i += xstep) {
    const x = (M.left + i * slot + slot / 2).toFixed(1);
    parts.push(`<text class="tick" x="${x}" y="${M.top + ph + 13}" text-anchor="middle">${i + 1}</text>`);
  }
  parts.push(`<text class="axis-label" x="${M.left + pw / 2}" y="${CHART_H - 4}" text-anchor="middle">packet (in capture order)</text>`);
  if (c.packets.length === 0) {
    parts.push(`<text class="empty" x="${M.left + pw / 2}" y="${M.top + ph / 2}" text-anchor="middle">no UDP packets in this capture</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

function packetTip(p: PacketInfo): string {
  return `#${p.index + 1} (record ${p.number}) ${p.src}:${p.srcPort} → ${p.dst}:${p.dstPort}, ${p.length} bytes, ${KIND_LABELS[p.kind]}, entropy ${p.entropy.toFixed(2)} bits/byte`;
}

function legend(): string {
  return (
    '<div class="legend">' +
    KINDS.map((k) => `<span><i class="sw k-${k}"></i>${esc(KIND_LABELS[k])}</span>`).join('') +
    '</div>'
  );
}

/** What the header table shows for one packet, as HTML. */
function readableCell(p: PacketInfo): string {
  if (p.dtls) {
    const rows = p.dtls.map((r) => {
      let s = `<b>${esc(r.contentTypeName)}</b> (${r.contentType}) · ${esc(r.version)} · epoch ${r.epoch} · seq ${r.sequence} · len ${r.length}`;
      if (r.handshakeTypeName) s += ` · <b>${esc(r.handshakeTypeName)}</b>`;
      if (r.alert) s += ` · ${esc(r.alert)}`;
      if (r.encrypted) s += ' <span class="badge enc">encrypted</span>';
      if (r.truncated) s += ' <span class="badge warn">truncated</span>';
      return `<div class="rec">${s}</div>`;
    });
    if (p.dtlsError) rows.push(`<div class="rec muted">${esc(p.dtlsError)}</div>`);
    return rows.join('');
  }
  if (p.frame === 'DATA') {
    if (!p.inner) return `<b>DATA</b> <span class="muted">inner packet not decodable: ${esc(p.innerError ?? '')}</span>`;
    const i = p.inner;
    const ep = (a: string, port?: number) => (port === undefined ? esc(a) : `${esc(a)}:${port}`);
    let s = `<b>DATA</b> · IPv${i.version} <b>${ep(i.src, i.srcPort)}</b> → <b>${ep(i.dst, i.dstPort)}</b> · ${esc(i.protocol)}`;
    if (i.flags) s += ` [${esc(i.flags.join(','))}]`;
    if (i.seq !== undefined) s += ` seq ${i.seq}`;
    if (i.icmpType !== undefined) s += ` type ${i.icmpType} code ${i.icmpCode}`;
    s += ` · ttl ${i.ttl}`;
    if (i.payloadLength !== undefined) s += ` · ${i.payloadLength} B data`;
    if (i.payloadText) s += `<div class="text">“${esc(i.payloadText)}”</div>`;
    if (p.innerError) s += ` <span class="muted">(${esc(p.innerError)})</span>`;
    return s;
  }
  if (p.frame) return `<b>${esc(p.frame)}</b>${p.controlText ? ` <span class="text">${esc(p.controlText)}</span>` : ''}`;
  return `<span class="muted">${p.length === 0 ? 'empty datagram' : 'not a tunnel frame or DTLS record'}</span>`;
}

function headerTable(cap: CaptureAnalysis, side: 'a' | 'b', n: number): string {
  if (cap.packets.length === 0) return `<p class="muted" data-testid="headers-${side}">no packets</p>`;
  // Arrows instead of full addresses: → from the first packet's sender, ← back to it.
  const first = cap.packets[0];
  const rows = cap.packets.slice(0, n).map((p) => {
    const out = p.src === first.src && p.srcPort === first.srcPort;
    return (
      `<tr id="pkt-${side}-${p.index}" class="k-row-${p.kind}" data-index="${p.index}" data-kind="${p.kind}">` +
      `<td class="num">${p.index + 1}</td>` +
      `<td class="num">${p.time.toFixed(3)}</td>` +
      `<td class="dir" title="${esc(`${p.src}:${p.srcPort} → ${p.dst}:${p.dstPort}`)}">${out ? '→' : '←'}</td>` +
      `<td class="num">${p.length}</td>` +
      `<td><i class="sw k-${p.kind}" title="${esc(KIND_LABELS[p.kind])}"></i></td>` +
      `<td class="what">${readableCell(p)}</td></tr>`
    );
  });
  const more = cap.packets.length > n ? `<p class="muted">… and ${cap.packets.length - n} more packets.</p>` : '';
  return (
    `<table class="headers" data-testid="headers-${side}"><thead><tr><th>#</th><th>time s</th><th title="→ from ${esc(`${first.src}:${first.srcPort}`)}, ← towards it">dir</th><th>bytes</th><th></th><th>what an observer can read</th></tr></thead>` +
    `<tbody>${rows.join('')}</tbody></table>${more}`
  );
}

/** Data for the byte map script: payload heads as base64, one entry per packet. */
function byteMapData(cap: CaptureAnalysis, n: number): string {
  const rows = cap.packets
    .filter((p) => p.head && p.index < n)
    .map((p) => ({ i: p.index, k: p.kind, len: p.length, b: p.head!.toString('base64'), m: p.matches }));
  // '<' escaped so no payload can ever close the <script> element.
  return JSON.stringify({ findLength: Buffer.byteLength(cap.find, 'utf8'), rows }).replace(/</g, '\\u003c');
}

function summaryCard(cap: CaptureAnalysis, side: 'a' | 'b', label: string, file?: string): string {
  const t = cap.totals;
  const verdict = cap.found
    ? `<div class="verdict leak" data-testid="verdict-${side}">“${esc(cap.find)}” is readable in ${cap.foundPackets} packet${cap.foundPackets === 1 ? '' : 's'}</div>`
    : `<div class="verdict safe" data-testid="verdict-${side}">“${esc(cap.find)}” not found in any payload</div>`;
  return (
    `<div class="card" data-testid="summary-${side}" data-found="${cap.found}" data-packets="${t.packets}" data-bytes="${t.bytes}" ` +
    `data-printable="${t.printableFraction.toFixed(4)}" data-entropy="${t.meanEntropy.toFixed(4)}">` +
    `<h2><span class="side">${side.toUpperCase()}</span> ${esc(label)}</h2>` +
    (file ? `<div class="file">${esc(file)} · ${esc(cap.linkTypeName)} · ${cap.records} records</div>` : '') +
    verdict +
    (cap.truncated ? `<div class="warnbox">The file is truncated: ${esc(cap.truncated)}. The complete records were analysed.</div>` : '') +
    '</div>'
  );
}

function summaryTable(a: CaptureAnalysis, b: CaptureAnalysis): string {
  const row = (name: string, key: string, f: (c: CaptureAnalysis, side: 'a' | 'b') => string, extra?: (c: CaptureAnalysis) => string) =>
    `<tr><th>${name}</th>` +
    ([a, b] as const)
      .map((c, i) => {
        const side = i === 0 ? 'a' : 'b';
        return `<td data-testid="${key}-${side}"${extra ? ' ' + extra(c) : ''}>${f(c, side)}</td>`;
      })
      .join('') +
    '</tr>';
  const skipped = (c: CaptureAnalysis) => {
    const e = Object.entries(c.skipped);
    return e.length === 0 ? '' : `<div class="muted">skipped: ${e.map(([k, v]) => `${esc(k)} ${v}`).join(', ')}</div>`;
  };
  const kinds = (c: CaptureAnalysis) =>
    KINDS.filter((k) => c.totals.kinds[k] > 0)
      .map((k) => `<span class="kc"><i class="sw k-${k}"></i>${esc(KIND_LABELS[k])}: ${c.totals.kinds[k]}</span>`)
      .join('') || '<span class="muted">none</span>';
  const meter = (f: number) => `<span class="meter"><span style="width:${(f * 100).toFixed(1)}%"></span></span>`;
  const flows = (list: FlowCount[], none: string) =>
    list.length === 0
      ? `<span class="muted">${none}</span>`
      : list
          .slice(0, 6)
          .map((f) => `<div class="flow">${esc(f.flow.replace('->', '→'))} <span class="muted">(${f.packets})</span></div>`)
          .join('') + (list.length > 6 ? `<div class="muted">… ${list.length - 6} more</div>` : '');
  return (
    `<table class="summary" data-testid="summary-table"><thead><tr><th></th><th>A</th><th>B</th></tr></thead><tbody>` +
    row('UDP packets', 'packets', (c) => `${fmtInt(c.totals.packets)}${c.port ? ` (port ${c.port})` : ''} of ${fmtInt(c.records)} records${skipped(c)}`, (c) => `data-value="${c.totals.packets}"`) +
    row('UDP payload bytes', 'bytes', (c) => `${fmtInt(c.totals.bytes)}${c.totals.packets ? ` <span class="muted">(${(c.totals.bytes / c.totals.packets).toFixed(0)} per packet)</span>` : ''}`, (c) => `data-value="${c.totals.bytes}"`) +
    row('Duration', 'duration', (c) => `${c.totals.duration.toFixed(3)} s`) +
    row('Kinds of packet', 'kinds', kinds) +
    row('Printable bytes', 'printable', (c) => `${meter(c.totals.printableFraction)} ${pct(c.totals.printableFraction)} <span class="muted">(random bytes: ~38%)</span>`, (c) => `data-value="${c.totals.printableFraction.toFixed(4)}"`) +
    row('Longest readable run', 'longest', (c) =>
      c.longestText
        ? `${c.longestText.length} characters in packet #${c.longestText.index + 1}<div class="text">“${esc(c.longestText.text)}”</div>`
        : '<span class="muted">none</span>',
    ) +
    row('Entropy (bits/byte)', 'entropy', (c) => `${c.totals.meanEntropy.toFixed(2)} mean per packet · ${c.totals.overallEntropy.toFixed(2)} over all bytes <span class="muted">(max 8)</span>`, (c) => `data-value="${c.totals.meanEntropy.toFixed(4)}"`) +
    row('Inner flows readable', 'inner', (c) => flows(c.innerFlows, 'none: no plaintext DATA frames')) +
    row('Underlay flows', 'underlay', (c) => flows(c.underlayFlows, 'none')) +
    row(`Search “${esc(a.find === b.find ? a.find : `${a.find}” / “${b.find}`)}”`, 'found', (c) =>
      c.found
        ? `<span class="badge leak">FOUND</span> in ${c.foundPackets} packet${c.foundPackets === 1 ? '' : 's'}, first #${(c.firstFoundIndex ?? 0) + 1}`
        : '<span class="badge safe">not found</span>',
      (c) => `data-found="${c.found}"`,
    ) +
    '</tbody></table>'
  );
}

/** What the charts of both sides share, so that their axes line up. */
interface ChartScale {
  /** Bars drawn per chart at most. */
  chartMax: number;
  slots: number;
  sizeMax: number;
}

function chartScale(a: CaptureAnalysis, b: CaptureAnalysis, chartMax: number): ChartScale {
  const shown = (c: CaptureAnalysis) => c.packets.slice(0, chartMax);
  const slots = Math.max(shown(a).length, shown(b).length, 1);
  const maxLen = Math.max(1, ...shown(a).map((p) => p.length), ...shown(b).map((p) => p.length));
  const sizeMax = Math.ceil(maxLen / tickStep(maxLen)) * tickStep(maxLen);
  return { chartMax, slots, sizeMax };
}

function cutNote(c: CaptureAnalysis, s: ChartScale): string {
  return c.packets.length > s.chartMax ? `<p class="muted">First ${s.chartMax} of ${fmtInt(c.packets.length)} packets drawn.</p>` : '';
}

function sizesChart(c: CaptureAnalysis, side: 'a' | 'b', s: ChartScale): string {
  const packets = c.packets.slice(0, s.chartMax);
  return barChart({ side, what: 'sizes', packets, slots: s.slots, yMax: s.sizeMax, yLabel: 'UDP payload bytes', value: (p) => p.length, tip: packetTip }) +
    legend() + cutNote(c, s);
}

function entropyChart(c: CaptureAnalysis, side: 'a' | 'b', s: ChartScale): string {
  return barChart({
    side,
    what: 'entropy',
    packets: c.packets.slice(0, s.chartMax),
    slots: s.slots,
    yMax: 8,
    yLabel: 'entropy, bits/byte',
    value: (p) => p.entropy,
    tip: packetTip,
    lines: c.packets.length > 0 ? [{ y: c.totals.meanEntropy, label: `mean ${c.totals.meanEntropy.toFixed(2)}`, cls: 'mean' }] : [],
    ceiling: (p) => Math.log2(Math.min(p.length, 256)),
  }) +
    `<div class="legend"><span><b style="color:#d93025">- - -</b> mean per packet: <b data-testid="mean-entropy-${side}">${c.totals.meanEntropy.toFixed(2)}</b> bits/byte</span>` +
    '<span><b>▬</b> highest possible for the packet\'s length, log<sub>2</sub>(min(n, 256))</span></div>';
}

/** The byte map's holder and data; the page script draws it. */
function byteMap(c: CaptureAnalysis, side: 'a' | 'b', n: number): string {
  return `<div class="bm-status" id="bm-status-${side}">hover over a byte to read it</div>` +
    `<div class="bytemap" id="bytemap-${side}" data-testid="bytemap-${side}"></div>` +
    `<script type="application/json" id="bytes-${side}">${byteMapData(c, n)}</script>` +
    (c.packets.length === 0 ? '<p class="muted">no packets</p>' : '');
}

const BYTE_MAP_KEY =
  '<div class="bm-key">' +
  '<span class="c r">G</span>part of a readable run (4+ printable characters)' +
  '<span class="c p">x</span>printable, alone' +
  '<span class="c p w">¶</span>line break / tab' +
  '<span class="c g0"></span><span class="c g3" style="margin:0"></span><span class="c g7" style="margin:0"></span> other bytes, darker = larger value' +
  `<span class="c p m">s</span>inside a match of the search string` +
  '</div>';

/** The HTML document around `body`: inline style and script, and a policy that allows nothing else. */
function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${body}
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

/** The complete report page comparing capture A with capture B. */
export function renderReport(a: CaptureAnalysis, b: CaptureAnalysis, opts: ReportOptions = {}): string {
  const labelA = opts.labelA ?? 'capture A';
  const labelB = opts.labelB ?? 'capture B';
  const title = opts.title ?? `minivpn capture report: ${labelA} vs ${labelB}`;
  const n = opts.tablePackets ?? DEFAULT_MAP_PACKETS;
  const scale = chartScale(a, b, opts.chartPackets ?? 2000);
  const when = (opts.generatedAt ?? new Date()).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  const pair = (f: (c: CaptureAnalysis, side: 'a' | 'b') => string) =>
    `<div class="pair"><div data-capture="a">${f(a, 'a')}</div><div data-capture="b">${f(b, 'b')}</div></div>`;

  return page(title, `<h1>${esc(title)}</h1>
<p class="lead">Both captures were taken on the VPN <em>underlay</em>: the UDP datagrams between client and server,
as anyone on the path (a Wi-Fi neighbour, the ISP) sees them. Each section shows A on the left and B on the right.
Hover over bars for details; click one to find the packet in the table.</p>
<div id="script-error" data-testid="script-error"></div>
${pair((c, side) => summaryCard(c, side, side === 'a' ? labelA : labelB, side === 'a' ? opts.fileA : opts.fileB))}
<h3>Summary</h3>
${summaryTable(a, b)}
<h3>Packet sizes</h3>
<p class="explain">One bar per UDP datagram, same scale on both sides. Encryption hides the content but not the sizes and timing:
a DTLS record adds a 13-byte header plus the cipher's nonce and tag to every packet, and the handshake adds packets of its own.</p>
${pair((c, side) => sizesChart(c, side, scale))}
<h3>Byte entropy per packet</h3>
<p class="explain">Shannon entropy of each payload in bits per byte: about 4–5 for text, close to 8 for ciphertext.
A packet of n bytes cannot exceed log<sub>2</sub>(n) (the black mark on each bar), so even encrypted short packets stay lower.</p>
${pair((c, side) => entropyChart(c, side, scale))}
<h3>Headers an observer can decode</h3>
<p class="explain">For plaintext tunnel frames the inner IP packet is in clear: addresses, ports, TCP flags and the start of the data.
For DTLS only the 13-byte record header is readable (content type, epoch, sequence number, length), plus the handshake before keys are agreed:
DTLS 1.2 sends the certificates in clear, so the names in them (server, and client identity) show up in the byte map below.</p>
${pair((c, side) => headerTable(c, side, n))}
<h3>Byte map</h3>
<p class="explain">Each cell is one payload byte, 64 per line, first ${n} packets. Readable text shows up as yellow bands;
ciphertext looks like noise, where about 38% of random bytes happen to be printable but rarely form runs.</p>
${BYTE_MAP_KEY}
${pair((c, side) => byteMap(c, side, n))}
<footer>Generated by minivpn's capture report (src/lab/report/) on ${esc(when)}.
A: ${esc(opts.fileA ?? labelA)} · B: ${esc(opts.fileB ?? labelB)}.</footer>`);
}
