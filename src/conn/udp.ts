// The one UDP socket a VPN endpoint uses. Large kernel buffers absorb bursts: a batch of
// 64 full-size packets is ~90 KB, and the default (~200 KB) overflows under load.
import dgram from 'node:dgram';
import net from 'node:net';
import { BatchView } from '../batch';

const BUFFER_BYTES = 4 * 1024 * 1024;

export interface UdpOptions {
  host: string;
  port: number;
}

/** Binds a socket; host '::' listens on IPv6 and IPv4 (dual stack). */
export function bindUdp(opts: UdpOptions): Promise<dgram.Socket> {
  const type = net.isIPv6(opts.host) ? 'udp6' : 'udp4';
  const sock = dgram.createSocket({ type, ipv6Only: false, recvBufferSize: BUFFER_BYTES, sendBufferSize: BUFFER_BYTES });
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      sock.close();
      reject(new Error(`cannot listen on UDP ${opts.host}:${opts.port}: ${err.message}`));
    };
    sock.once('error', onError);
    sock.bind(opts.port, opts.host, () => {
      sock.off('error', onError);
      resolve(sock);
    });
  });
}

/**
 * Sends every datagram of a batch. Node's dgram first tries a synchronous send, so the
 * buffer is normally free again when this returns; callers still rotate between a few
 * output batches so a rare queued send never sees its bytes overwritten.
 */
export function sendBatch(sock: dgram.Socket, view: BatchView, port: number, address: string): void {
  for (let i = 0; i < view.count; i++) {
    sock.send(view.buf, view.offs[i], view.lens[i], port, address);
  }
}
