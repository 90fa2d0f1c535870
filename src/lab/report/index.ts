// The capture report: what an eavesdropper on the VPN underlay can read. Two captures of
// the same exchange (say, the lab-only plaintext tunnel and the DTLS tunnel) are analysed
// packet by packet and drawn side by side in one self-contained HTML page.
//
// Two steps, so each can be tested on its own:
//   analyzeCapture(pcapBytes, opts) -> CaptureAnalysis   plain data, no HTML
//   renderReport(a, b, opts)        -> string            the page (inline CSS, SVG and JS)
//
// The page fetches nothing: no external scripts, styles, fonts or images, and a
// Content-Security-Policy that forbids them, so it can be opened offline or mailed around.
//
// The parts: decode.ts (one payload, as an observer reads it), analyze.ts (a capture file,
// totalled), html.ts (the page) with assets.ts (its style sheet and script). The pcap file
// format itself is src/lab/pcap.ts.

export {
  DtlsRecordInfo, InnerPacketInfo, describeDtlsRecord, describeInner, isPrintable, parseDtlsRecords, shannonEntropy,
} from './decode';
export {
  AnalyzeOptions, CaptureAnalysis, DEFAULT_FIND, DEFAULT_MAP_BYTES, DEFAULT_MAP_PACKETS, FlowCount, KIND_LABELS,
  PacketInfo, PacketKind, analyzeCapture, describePacket,
} from './analyze';
export { ReportOptions, esc, renderReport } from './html';
