// MTU arithmetic: what one tunnelled packet costs on the underlay.

/** The Ethernet header a TAP tunnel carries in front of each IP packet (no 802.1Q tag). */
export const ETHER_HEADER = 14;

/**
 * The largest inner IP packet that fits in one underlay packet without fragmentation.
 *
 * Each tunnelled packet is wrapped, outermost first, in:
 *   outer IP header      20 bytes for IPv4, 40 for IPv6 (no options / extension headers)
 *   UDP header            8
 *   DTLS 1.2 record      37 worst case, with AES-GCM: record header 13 + explicit nonce 8 +
 *                           GCM tag 16. (ChaCha20-Poly1305 has no explicit nonce in DTLS 1.2,
 *                           so 29; AES-GCM is the worst case we may negotiate.)
 *                        0 in --insecure-plaintext mode (no DTLS at all)
 *   our frame header      1 byte (the frame type, see docs/PROTOCOL.md)
 *   the Ethernet header  14 bytes with --dev tap (the frame is carried whole: MACs, EtherType),
 *                         0 with tun
 * So over IPv4 with a 1500-byte underlay: 1500-20-8-37-1 = 1434; plaintext: 1500-20-8-1 = 1471;
 * TAP: 1420 and 1457. The TAP device's MTU is this number too: like any Ethernet NIC's, it
 * counts the IP packet, not the header in front of it.
 */
export function computeTunnelMtu(underlayMtu: number, plaintext: boolean, ipv6Underlay: boolean, tap = false): number {
  const IP = ipv6Underlay ? 40 : 20;
  const UDP = 8;
  const DTLS = plaintext ? 0 : 13 + 8 + 16;
  const FRAME = 1;
  const ETHER = tap ? ETHER_HEADER : 0;
  return underlayMtu - IP - UDP - DTLS - FRAME - ETHER;
}
