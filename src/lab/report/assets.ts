// The page's inline style sheet and script (no external resources: the page's
// Content-Security-Policy forbids them, so it works offline).

import { KINDS, PacketKind } from './analyze';

const KIND_COLOURS: Record<PacketKind, string> = {
  'tunnel-data': '#1f77b4',
  'tunnel-control': '#9467bd',
  'dtls-handshake': '#ff7f0e',
  'dtls-appdata': '#2ca02c',
  other: '#8c8c8c',
};

export const CSS = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;color:#1d2329;background:#f4f5f7}
main{max-width:1400px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0}
h3{font-size:15px;margin:26px 0 4px}
p.lead{margin:4px 0 14px;color:#3b4550;max-width:1100px}
.muted{color:#6b7580}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:22px}
.pair>div{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px;min-width:0;overflow-x:auto}
.explain{color:#3b4550;margin:0 0 8px;max-width:1100px}
.card h2 .side{display:inline-block;background:#1d2329;color:#fff;border-radius:4px;padding:0 7px;margin-right:4px}
.card .file{color:#6b7580;font-size:12px;margin:2px 0 6px;word-break:break-all}
.verdict{font-weight:bold;padding:6px 10px;border-radius:4px}
.verdict.leak{background:#fde2e1;color:#9b1c1c;border:1px solid #f5b5b2}
.verdict.safe{background:#dff3e4;color:#1b5e2b;border:1px solid #aedbb9}
.warnbox{margin-top:6px;background:#fff4d6;border:1px solid #f0d68a;padding:4px 8px;border-radius:4px;font-size:12px}
table{border-collapse:collapse}
table.summary{width:100%;background:#fff;border:1px solid #dde1e6}
table.summary th,table.summary td{border-bottom:1px solid #e8ebee;padding:6px 10px;text-align:left;vertical-align:top}
table.summary thead th{background:#eef0f3}
table.summary tbody th{width:190px;color:#3b4550;font-weight:600}
table.summary td{width:40%}
.badge{display:inline-block;font-size:11px;font-weight:bold;padding:0 6px;border-radius:3px;vertical-align:1px}
.badge.leak{background:#d93025;color:#fff}
.badge.safe{background:#1e8e3e;color:#fff}
.badge.enc{background:#e6f4ea;color:#1b5e2b;border:1px solid #aedbb9}
.badge.warn{background:#fff4d6;color:#7a5b00;border:1px solid #f0d68a}
.meter{display:inline-block;width:90px;height:9px;background:#e8ebee;border-radius:2px;vertical-align:0;overflow:hidden}
.meter span{display:block;height:100%;background:#e0a800}
.text{font-family:"DejaVu Sans Mono",monospace;font-size:12px;color:#7a4d00;background:#fff8e1;padding:1px 4px;border-radius:3px;word-break:break-all}
.flow{font-family:"DejaVu Sans Mono",monospace;font-size:12px}
.kc{margin-right:12px;white-space:nowrap}
i.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.legend{font-size:12px;margin:6px 0 0}
.legend span{margin-right:14px;white-space:nowrap}
svg.chart{max-width:100%;height:auto;display:block}
svg .grid{stroke:#e8ebee}
svg .axis{stroke:#8c959f}
svg .tick{font-size:10px;fill:#6b7580}
svg .axis-label{font-size:11px;fill:#3b4550}
svg .empty{font-size:13px;fill:#6b7580}
svg .bar{cursor:pointer}
svg .bar:hover{opacity:.7}
svg .mean{stroke:#d93025;stroke-width:1.5;stroke-dasharray:6 4}
svg .mean-label{font-size:11px;fill:#d93025;font-weight:bold;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .ceiling{stroke:#1d2329;stroke-width:2}
${KINDS.map((k) => `.k-${k}{fill:${KIND_COLOURS[k]};background:${KIND_COLOURS[k]}}`).join('\n')}
table.headers{width:100%;font-size:12px}
table.headers th{text-align:left;border-bottom:2px solid #dde1e6;padding:3px 5px;white-space:nowrap}
table.headers td{border-bottom:1px solid #eef0f3;padding:3px 5px;vertical-align:top}
table.headers td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.headers td.dir{text-align:center}
table.headers tr.flash{background:#fff3b0}
table.headers td.what{overflow-wrap:anywhere}
.badge{white-space:nowrap}
.bytemap .bm-row{margin:0 0 6px}
.bytemap .bm-label{font-size:11px;color:#3b4550;margin-bottom:1px}
.bytemap .bm-cells{display:grid;grid-template-columns:repeat(64,10px);grid-auto-rows:12px;width:max-content}
.bytemap .c{font:9px/12px "DejaVu Sans Mono",monospace;text-align:center;color:#5c3a00;overflow:hidden}
.c.g0{background:#f7f8f9}.c.g1{background:#e4e7ea}.c.g2{background:#d3d8dc}.c.g3{background:#c3c9cf}
.c.g4{background:#b3bac2}.c.g5{background:#a3abb4}.c.g6{background:#939ca6}.c.g7{background:#838d98}
.c.p{background:#fff1b8}
.c.r{background:#ffc93c;color:#2b1d00}
.c.w{color:#b08a2e}
.c.m{background:#d93025;color:#fff;font-weight:bold}
.bm-status{font:12px "DejaVu Sans Mono",monospace;min-height:18px;color:#3b4550;position:sticky;top:0;background:#fff;padding:2px 0}
.bm-key{font-size:12px;margin:4px 0 8px}
.bm-key .c{display:inline-block;width:14px;height:12px;vertical-align:-2px;margin:0 3px 0 10px;font:9px/12px monospace;text-align:center}
footer{margin-top:30px;color:#6b7580;font-size:12px}
#script-error{background:#fde2e1;color:#9b1c1c;padding:8px;display:none}
`;

// The byte map is drawn in the browser from base64 data: one element per byte would make
// the file large, and the script adds the hover readout. Kept in plain ES5-ish JavaScript.
export const SCRIPT = `
(function () {
  function printable(b) { return (b >= 32 && b <= 126) || b === 9 || b === 10 || b === 13; }
  function hex(b) { return (b < 16 ? '0' : '') + b.toString(16); }
  function decode(b64) {
    var s = atob(b64), out = new Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function drawMap(side) {
    var holder = document.getElementById('bytemap-' + side);
    var data = JSON.parse(document.getElementById('bytes-' + side).textContent);
    var status = document.getElementById('bm-status-' + side);
    var frag = document.createDocumentFragment();
    data.rows.forEach(function (row) {
      var bytes = decode(row.b);
      var div = document.createElement('div');
      div.className = 'bm-row';
      div.setAttribute('data-index', row.i);
      var label = document.createElement('div');
      label.className = 'bm-label';
      label.textContent = '#' + (row.i + 1) + ' · ' + row.len + ' bytes' + (row.len > bytes.length ? ' (first ' + bytes.length + ' shown)' : '');
      var sw = document.createElement('i');
      sw.className = 'sw k-' + row.k;
      label.insertBefore(sw, label.firstChild);
      var cells = document.createElement('div');
      cells.className = 'bm-cells';
      // Mark bytes inside a match of the search string, and runs of 4+ printable bytes.
      var inMatch = new Array(bytes.length);
      row.m.forEach(function (at) { for (var j = at; j < at + data.findLength && j < bytes.length; j++) inMatch[j] = true; });
      var runEnd = -1, runLen = 0, count = 0, html = [];
      for (var i = 0; i < bytes.length; i++) {
        var b = bytes[i], cls = 'c', ch = '';
        if (printable(b)) {
          count++;
          // First byte of a run: measure the run once.
          if (i > runEnd) {
            runEnd = i;
            while (runEnd + 1 < bytes.length && printable(bytes[runEnd + 1])) runEnd++;
            runLen = runEnd - i + 1;
          }
          cls += runLen >= 4 ? ' p r' : ' p';
          if (b === 9 || b === 10 || b === 13) { cls += ' w'; ch = b === 10 ? '¶' : '·'; }
          else ch = String.fromCharCode(b);
        } else {
          cls += ' g' + (b >> 5);
        }
        if (inMatch[i]) cls += ' m';
        html.push('<span class="' + cls + '">' + (ch === '<' ? '&lt;' : ch === '&' ? '&amp;' : ch) + '</span>');
      }
      cells.innerHTML = html.join('');
      div.setAttribute('data-printable', count);
      div.setAttribute('data-shown', bytes.length);
      div.appendChild(label);
      div.appendChild(cells);
      cells.addEventListener('mouseover', function (ev) {
        var t = ev.target;
        if (!t.classList || !t.classList.contains('c')) return;
        var off = Array.prototype.indexOf.call(cells.children, t);
        var b = bytes[off];
        status.textContent = 'packet #' + (row.i + 1) + ', byte ' + off + ': 0x' + hex(b) + ' = ' + b +
          (b >= 32 && b <= 126 ? " = '" + String.fromCharCode(b) + "'" : b === 10 ? ' = LF' : b === 13 ? ' = CR' : b === 9 ? ' = TAB' : '');
      });
      frag.appendChild(div);
    });
    holder.appendChild(frag);
    holder.setAttribute('data-rendered', 'true');
  }
  // Clicking a bar jumps to that packet's row in the header table.
  document.addEventListener('click', function (ev) {
    var t = ev.target;
    if (!t.classList || !t.classList.contains('bar')) return;
    var row = document.getElementById('pkt-' + t.getAttribute('data-side') + '-' + t.getAttribute('data-index'));
    if (!row) return;
    row.scrollIntoView({ block: 'center' });
    row.classList.add('flash');
    setTimeout(function () { row.classList.remove('flash'); }, 1500);
  });
  try {
    drawMap('a');
    drawMap('b');
    document.body.setAttribute('data-ready', 'true');
  } catch (e) {
    var box = document.getElementById('script-error');
    box.textContent = 'The page script failed: ' + e;
    box.style.display = 'block';
  }
})();
`;
