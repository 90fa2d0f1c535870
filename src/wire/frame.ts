// The tunnel framing (spec: docs/PROTOCOL.md). Every tunnel message, data or control,
// starts with one header byte:
//
//    bit  7 6 5 4   3 2 1 0
//        +-------+---------+
//        |version|  type   |      version 4 = protocol v1, so v1 bytes are 0x41..0x45
//        +-------+---------+
//
// The same frames travel inside DTLS application-data records (normal mode) or directly
// as the UDP payload (lab-only plaintext mode).
//
// Why 0x4_: a DTLS record starts with its content type, 20..25 (0x14..0x19), followed by
// the version bytes 0xfe 0xfd (DTLS 1.2) or 0xfe 0xff (DTLS 1.0). A frame's first byte is
// 0x41..0x45, never 20..25, so one look at the first byte of a datagram tells a DTLS
// server that a plaintext client is talking to it, and a plaintext server that a DTLS
// client is (the peers are configured differently; we count and log that instead of
// feeding garbage to the other parser). 0x41..0x45 also lie outside the whole 20..63
// range that RFC 7983/9443 set aside for DTLS, so future DTLS content types are safe.

export const FRAME_VERSION = 4;
export const FRAME_OVERHEAD = 1;

export const FrameType = {
  /** An IP packet follows. */
  DATA: 0x41,
  /** A UTF-8 JSON control message follows (see control.ts). */
  CONTROL: 0x42,
  /** Liveness probe, no body; the peer answers with KEEPALIVE_REPLY. */
  KEEPALIVE: 0x43,
  KEEPALIVE_REPLY: 0x44,
  /** The sender is closing the tunnel; an optional UTF-8 reason follows. */
  CLOSE: 0x45,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/**
 * Numeric error codes returned by `frameType` (negative, so they never look like a type
 * byte). Numbers keep the hot path free of allocation; `frameErrorName` gives the text.
 */
export const FRAME_ERR_EMPTY = -1;
export const FRAME_ERR_VERSION = -2;
export const FRAME_ERR_TYPE = -3;

export type FrameError = 'empty' | 'bad_version' | 'bad_type';

/** 'empty' | 'bad_version' | 'bad_type' for a negative `frameType` result. */
export function frameErrorName(code: number): FrameError {
  return code === FRAME_ERR_EMPTY ? 'empty' : code === FRAME_ERR_VERSION ? 'bad_version' : 'bad_type';
}

/**
 * The frame type byte (FrameType.*) of the frame at buf[off, off+len), or a negative
 * FRAME_ERR_* code: empty datagram, unknown version nibble, unknown type nibble.
 * Receivers drop (and count) anything negative.
 */
export function frameType(buf: Buffer, off = 0, len = buf.length - off): number {
  if (len < 1 || off >= buf.length) return FRAME_ERR_EMPTY;
  const b = buf[off];
  if (b >> 4 !== FRAME_VERSION) return FRAME_ERR_VERSION;
  if (b < FrameType.DATA || b > FrameType.CLOSE) return FRAME_ERR_TYPE;
  return b;
}

/** True when the datagram is a valid v1 frame header (any type). */
export function looksLikeFrame(buf: Buffer, off = 0, len = buf.length - off): boolean {
  return frameType(buf, off, len) > 0;
}

/** Length of a DTLS record header: type(1) version(2) epoch(2) sequence(6) length(2). */
export const DTLS_RECORD_HEADER_LEN = 13;

/**
 * True when the datagram starts like a DTLS record: content type 20..25 and version
 * 0xfefd (DTLS 1.2) or 0xfeff (DTLS 1.0, used in the first ClientHello), with at least
 * a full 13-byte record header.
 */
export function looksLikeDtls(buf: Buffer, off = 0, len = buf.length - off): boolean {
  if (len < DTLS_RECORD_HEADER_LEN || off + DTLS_RECORD_HEADER_LEN > buf.length) return false;
  const ct = buf[off];
  return ct >= 20 && ct <= 25 && buf[off + 1] === 0xfe && (buf[off + 2] === 0xfd || buf[off + 2] === 0xff);
}

// --- Hot path: write headers into a caller's buffer -------------------------------------

/**
 * Writes a DATA header at buf[off]; the caller places the IP packet at off + 1 (so a
 * packet can be read straight into buf at off + FRAME_OVERHEAD with no copy).
 * Returns the number of bytes written (FRAME_OVERHEAD).
 */
export function writeDataHeader(buf: Buffer, off = 0): number {
  buf[off] = FrameType.DATA;
  return FRAME_OVERHEAD;
}

/** Writes any frame header byte; returns FRAME_OVERHEAD. */
export function writeFrameHeader(buf: Buffer, off: number, type: FrameTypeValue): number {
  buf[off] = type;
  return FRAME_OVERHEAD;
}

// --- Slow path: whole frames as new Buffers ------------------------------------------

/** Header byte + body as a new Buffer. */
export function encodeFrame(type: FrameTypeValue, body?: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const out = Buffer.allocUnsafe(FRAME_OVERHEAD + (b ? b.length : 0));
  out[0] = type;
  if (b) b.copy(out, FRAME_OVERHEAD);
  return out;
}

/**
 * A complete CONTROL frame carrying `msg` as JSON, *without* validation (labs, tests).
 * Programs send real control messages with control.ts's encodeControlFrame (or
 * encodeFrame(FrameType.CONTROL, encodeControl(msg))), which check the message first.
 */
export function encodeControl(msg: unknown): Buffer {
  return encodeFrame(FrameType.CONTROL, JSON.stringify(msg));
}

export function encodeKeepalive(): Buffer {
  return encodeFrame(FrameType.KEEPALIVE);
}

export function encodeKeepaliveReply(): Buffer {
  return encodeFrame(FrameType.KEEPALIVE_REPLY);
}

const MAX_CLOSE_REASON = 200;

/** A CLOSE frame with an optional UTF-8 reason (trimmed to 200 bytes). */
export function encodeClose(reason?: string): Buffer {
  if (!reason) return encodeFrame(FrameType.CLOSE);
  let b = Buffer.from(reason, 'utf8');
  if (b.length > MAX_CLOSE_REASON) {
    // Cut at a byte limit, then drop a character the cut may have split in half.
    b = Buffer.from(b.subarray(0, MAX_CLOSE_REASON).toString('utf8').replace(/\uFFFD+$/, ''), 'utf8');
  }
  return encodeFrame(FrameType.CLOSE, b);
}

export type DecodedFrame =
  | { ok: true; type: FrameTypeValue; /** A view into the input, not a copy. */ body: Buffer }
  | { ok: false; error: FrameError };

/** Splits a frame into its type and body (slow path), or says why it is not a frame. */
export function decodeFrame(buf: Buffer): DecodedFrame {
  const t = frameType(buf, 0, buf.length);
  if (t < 0) return { ok: false, error: frameErrorName(t) };
  return { ok: true, type: t as FrameTypeValue, body: buf.subarray(FRAME_OVERHEAD) };
}

/**
 * The reason text of a CLOSE frame's body, with control characters replaced so a
 * hostile peer cannot forge log lines.
 */
export function closeReason(body: Buffer): string {
  return body.subarray(0, MAX_CLOSE_REASON).toString('utf8').replace(/[\x00-\x1f\x7f]/g, '?');
}

/** Name of a frame type for logs: 'DATA', 'CONTROL', ... */
export function frameTypeName(type: number): string {
  for (const [name, v] of Object.entries(FrameType)) if (v === type) return name;
  return `0x${type.toString(16).padStart(2, '0')}`;
}

/** DTLS content type of handshake records (ClientHello and the rest). */
export const DTLS_HANDSHAKE = 22;
/** DTLS content type of application data (the records that carry our frames). */
export const DTLS_APPLICATION_DATA = 23;

/**
 * The epoch of a DTLS 1.2 application-data record at buf[off, off+len) whose length field
 * covers the rest of the datagram (or leaves room for more records), or -1 when it is not
 * one. What the server reads, in the clear, of a record from an unknown address (roaming).
 */
export function appRecordEpoch(buf: Buffer, off: number, len: number): number {
  if (len < DTLS_RECORD_HEADER_LEN || off + len > buf.length) return -1;
  if (buf[off] !== DTLS_APPLICATION_DATA || buf[off + 1] !== 0xfe || buf[off + 2] !== 0xfd) return -1;
  const length = u16(buf, off + 11);
  if (length === 0 || DTLS_RECORD_HEADER_LEN + length > len) return -1;
  return u16(buf, off + 3);
}

/**
 * True when buf[off, off+len) holds an encrypted DTLS record (epoch not 0) whose body is
 * shorter than `minBody`, the cipher's overhead (explicit nonce and tag): a record no peer
 * sends, and one that OpenSSL 3.0 answers with a fatal internal error instead of dropping it
 * (RFC 6347 §4.1.2.7), so anyone able to send the session a datagram could end it (found by
 * test/fuzz.test.ts). Walks the records as OpenSSL does: header, then `length` bytes.
 */
export function hasShortRecord(buf: Buffer, off: number, len: number, minBody: number): boolean {
  const end = Math.min(off + len, buf.length);
  for (let p = off; p + DTLS_RECORD_HEADER_LEN <= end; ) {
    const length = u16(buf, p + 11);
    if (u16(buf, p + 3) !== 0 && length < minBody) return true;
    p += DTLS_RECORD_HEADER_LEN + length;
  }
  return false;
}

/** The 48-bit sequence number of the DTLS record at buf[off] (in the clear in its header). */
export function recordSeq(buf: Buffer, off: number): number {
  return u16(buf, off + 5) * 0x1_0000_0000 + u32(buf, off + 7);
}

// The record-header reads above run for every datagram: plain byte reads, which the callers'
// bounds make safe. (Buffer's readUInt16BE/readUInt32BE check their argument on each call,
// behind a wrapper that inlines poorly: bench/README.md, "Instructions per packet".)
/** The big-endian 16-bit number at buf[off] (off + 1 within the buffer). */
export function u16(buf: Buffer, off: number): number {
  return (buf[off] << 8) | buf[off + 1];
}
/** The big-endian unsigned 32-bit number at buf[off] (off + 3 within the buffer). */
export function u32(buf: Buffer, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}
