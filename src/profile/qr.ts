// A profile as a QR code in the terminal (npm "qrcode" encodes it; we draw it), for a
// phone or a second machine with a camera, as WireGuard users do with their configs.
// Two rows of modules per line of text with half blocks, black on white whatever the
// terminal's colours, and a quiet zone of two modules around it.
import type * as QR from 'qrcode';

const MARGIN = 2;
const DARK_ON_LIGHT = '\x1b[30;47m';
const RESET = '\x1b[0m';

export type QrResult = { ok: true; text: string; version: number; columns: number } | { ok: false; why: string };

/** The modules of `text`'s QR code (row-major, 1 = dark), or throws when it cannot hold the text. */
export function qrModules(text: string): { size: number; dark(r: number, c: number): boolean; version: number } {
  // Loaded here: only --qr needs it.
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const qrcode = require('qrcode') as typeof QR;
  // Level L holds the most (2953 bytes at version 40): a terminal is a clean surface.
  const code = qrcode.create(text, { errorCorrectionLevel: 'L' });
  const m = code.modules;
  return { size: m.size, dark: (r, c) => m.get(r, c) === 1, version: code.version };
}

/** Draws the modules as lines of half blocks (without colours). */
export function drawQr(q: { size: number; dark(r: number, c: number): boolean }): string[] {
  const n = q.size + 2 * MARGIN;
  const dark = (r: number, c: number) => {
    const rr = r - MARGIN;
    const cc = c - MARGIN;
    return rr >= 0 && cc >= 0 && rr < q.size && cc < q.size && q.dark(rr, cc);
  };
  const lines: string[] = [];
  for (let r = 0; r < n; r += 2) {
    let line = '';
    for (let c = 0; c < n; c++) {
      const top = dark(r, c);
      const bottom = r + 1 < n && dark(r + 1, c);
      line += top ? (bottom ? '█' : '▀') : (bottom ? '▄' : ' ');
    }
    lines.push(line);
  }
  return lines;
}

/** The QR code of `text` for a terminal `columns` wide (null: any width), or why it does not fit. */
export function qrFor(text: string, columns: number | null): QrResult {
  let q;
  try {
    q = qrModules(text);
  } catch (err) {
    return { ok: false, why: `the profile (${Buffer.byteLength(text)} bytes) is too large for a QR code (${(err as Error).message}); give the file instead` };
  }
  const lines = drawQr(q);
  const width = lines[0].length;
  if (columns !== null && width > columns) {
    return { ok: false, why: `it needs a terminal ${width} columns wide, this one has ${columns}: widen the terminal (or make the font smaller) and try again, or give the file instead` };
  }
  return { ok: true, text: lines.map((l) => `${DARK_ON_LIGHT}${l}${RESET}`).join('\n') + '\n', version: q.version, columns: width };
}
