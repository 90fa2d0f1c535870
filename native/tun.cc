// TUN device: open with the TUNSETIFF ioctl and read packets in batches. The same class opens
// a TAP device (IFF_TAP: whole Ethernet frames instead of IP packets; the kernel treats it as
// an Ethernet NIC, with ARP and a MAC address). Everything else is the same; only GRO looks
// past the 14-byte Ethernet header to the IP packet behind it.
//
// Why native: Node cannot issue ioctls, and net.Socket refuses a TUN fd. Reading on the libuv
// thread pool costs a thread per pending read and blocks shutdown, so instead we watch the
// non-blocking fd with uv_poll on the event loop thread and, per wakeup, read as many packets
// as fit into a buffer that JavaScript gave us once. JavaScript then gets one call per batch:
// onPackets(count), with offsets and lengths filled in. Nothing is allocated per packet.
//
// GRO (optional): with IFF_VNET_HDR every read and write carries a virtio_net_hdr in front
// of the packet, and a write may then hand the kernel one large TCP packet that stands for
// many segments (gso_type TCPV4 or TCPV6), as a NIC's receive offload does. tunWrite merges the
// consecutive segments of one TCP flow in a batch into such a write, so the kernel's TCP
// receive path (and its ACK) runs once per merged packet instead of once per segment.
#include <napi.h>
#include <uv.h>

#include "handle.h"
#include "poll.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

// The kernel's struct virtio_net_hdr (linux/virtio_net.h, which C++ cannot include: it has a
// field named `class`). Host byte order: a TUN uses the host's endianness unless told otherwise.
struct virtio_net_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;      // bytes of headers in front of the payload
  uint16_t gso_size;     // payload bytes per segment
  uint16_t csum_start;   // where the checksum's coverage starts
  uint16_t csum_offset;  // where, from csum_start, the checksum goes
};
static_assert(sizeof(virtio_net_hdr) == 10, "virtio_net_hdr is 10 bytes");
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;

// Errors carry the errno code (err.code) and say what to do about it.
Napi::Error TunError(Napi::Env env, int err, const std::string& what) {
  std::string hint;
  switch (err) {
    case EACCES:
    case EPERM: hint = "run as root or give the process CAP_NET_ADMIN"; break;
    case ENOENT:
    case ENODEV: hint = "there is no /dev/net/tun: load the tun module (modprobe tun) or, in a container, pass the device in"; break;
    case EBUSY: hint = "the interface name is in use by another device or process"; break;
    case EINVAL: hint = "invalid interface name or flags (names are at most 15 characters)"; break;
    default: break;
  }
  std::string msg = what + ": " + strerror(err);
  if (!hint.empty()) msg += " (" + hint + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  const char* code = err == EACCES ? "EACCES" : err == EPERM ? "EPERM" : err == ENOENT ? "ENOENT"
                   : err == ENODEV ? "ENODEV" : err == EBUSY ? "EBUSY" : err == EINVAL ? "EINVAL"
                   : err == EAGAIN ? "EAGAIN" : err == EBADF ? "EBADF" : "EIO";
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

class Tun : public Wrapped<Tun>, public PolledFd {
 public:
  static constexpr uint32_t kHandleTag = 0x74756e30;  // "tun0"
  static constexpr const char* kHandleName = "TUN";
  static constexpr const char* kClassName = "Tun";
  static constexpr napi_type_tag kTypeTag = {0x0cf7e26114ef8c99, 0xd446e9478b0535b5};
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tun", {
      InstanceMethod<&Tun::Start>("start"),
      InstanceMethod<&Tun::Write>("write"),
      InstanceMethod<&Tun::Handle>("handle"),
      InstanceMethod<&Tun::Close>("close"),
      InstanceMethod<&Tun::RefJs>("ref"),
      InstanceMethod<&Tun::UnrefJs>("unref"),
      InstanceAccessor<&Tun::Name>("name"),
      InstanceAccessor<&Tun::Fd>("fd"),
      InstanceMethod<&Tun::BindStatus>("bindStatus"),
    });
  }

  // new Tun(name, gro, tap) opens the device; name '' lets the kernel pick (tun0, tun1, ...).
  explicit Tun(const Napi::CallbackInfo& info) : Wrapped<Tun>(info) {
    Napi::Env env = info.Env();
    Args a(info, "new Tun");
    std::string want;
    bool gro = false, tap = false;
    if ((!info[0].IsUndefined() && !a.String(info[0], "name", &want)) || !a.OptBool(info[1], "gro", &gro) ||
        !a.OptBool(info[2], "tap", &tap)) return;
    gro_ = vnet_ = gro;
    l2_ = tap ? kEtherHeader : 0;
    if (want.size() >= IFNAMSIZ) {
      TunError(env, EINVAL, "open TUN '" + want + "'").ThrowAsJavaScriptException();
      return;
    }
    fd_ = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) {
      TunError(env, errno, "open /dev/net/tun").ThrowAsJavaScriptException();
      return;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = (tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI;  // raw packets (frames), no 4-byte packet-info header
    if (vnet_) ifr.ifr_flags |= IFF_VNET_HDR;
    strncpy(ifr.ifr_name, want.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd_, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      ::close(fd_);
      fd_ = -1;
      TunError(env, err, "TUNSETIFF '" + want + "'").ThrowAsJavaScriptException();
      return;
    }
    name_ = ifr.ifr_name;
    int hdrSize = sizeof(virtio_net_hdr);
    if (vnet_ && ioctl(fd_, TUNSETVNETHDRSZ, &hdrSize) < 0) {
      int err = errno;
      ::close(fd_);
      fd_ = -1;
      TunError(env, err, "TUNSETVNETHDRSZ").ThrowAsJavaScriptException();
      return;
    }
    // No TUNSETOFFLOAD: the kernel keeps segmenting and checksumming what it sends us, so
    // reads stay one packet each. (Large reads were measured and did not pay: bench/README.md.)
    Adopt(env, fd_);
  }

  ~Tun() override { Shutdown(); }

 private:
  // start(buffer, offsets: Uint32Array, lengths: Uint32Array, maxPacket, headroom, onPackets)
  // The buffer and arrays are kept for the life of the reader and reused for every batch.
  // `headroom` bytes are left free before each packet so the caller can prepend a header
  // (our 1-byte frame type) in place instead of copying the packet.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) { TunError(env, EBADF, "start").ThrowAsJavaScriptException(); return env.Undefined(); }
    if (polling()) { Napi::Error::New(env, "TUN reader already started").ThrowAsJavaScriptException(); return env.Undefined(); }
    Args a(info, "Tun.start");
    View<uint8_t> buf;
    View<uint32_t> offs, lens;
    uint32_t maxPacket = 0, headroom = 0;
    Napi::Function cb;
    if (!a.Array(info[0], "buffer", &buf, true) || !a.Array(info[1], "offsets", &offs, true) || !a.Array(info[2], "lengths", &lens, true) ||
        !a.Int(info[3], "maxPacket", 1, 65535, &maxPacket) || !a.Int(info[4], "headroom", 0, 65535, &headroom) ||
        !a.Function(info[5], "onPackets", &cb)) {
      return env.Undefined();
    }
    if (static_cast<size_t>(maxPacket) + headroom > buf.len) {
      a.RangeFail("buffer: " + std::to_string(buf.len) + " bytes, smaller than one packet plus headroom (" +
                  std::to_string(maxPacket + headroom) + ")");
      return env.Undefined();
    }
    if (offs.len == 0 || lens.len == 0) {
      a.RangeFail("offsets and lengths: a batch of at least one packet is needed");
      return env.Undefined();
    }
    bufRef_ = Napi::Persistent(buf.obj);
    offRef_ = Napi::Persistent(offs.obj);
    lenRef_ = Napi::Persistent(lens.obj);
    cb_ = Napi::Persistent(cb);
    buf_ = buf.data;
    bufLen_ = buf.len;
    offs_ = offs.data;
    lens_ = lens.data;
    maxCount_ = std::min(offs.len, lens.len);
    maxPacket_ = maxPacket;
    headroom_ = headroom;

    if (!StartPoll(env)) { TunError(env, EBADF, "start").ThrowAsJavaScriptException(); return env.Undefined(); }
    Napi::ObjectWrap<Tun>::Ref();  // keep the JS object alive while the reader runs
    return env.Undefined();
  }

  void OnReadable() override { Drain(); }

  // Read until EAGAIN or until the batch is full; one JS call per batch. uv_poll is
  // level-triggered, so a full batch simply makes the loop call us again next turn,
  // which keeps one busy TUN from starving the UDP socket.
  void Drain() {
    uint32_t n = Fill();
    if (n == 0) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    CallJs(env, cb_, Value(), n, LoopNow());
  }

  // Reads packets into the batch until EAGAIN or until it is full; returns how many.
  uint32_t Fill() {
    size_t used = 0;
    uint32_t n = 0;
    while (n < maxCount_ && used + headroom_ + maxPacket_ <= bufLen_) {
      ssize_t r = ReadOne(buf_ + used + headroom_);
      if (r < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: drained. Other errors: the next poll reports them again.
      }
      if (r == 0) continue;  // (a packet we could not use; see ReadOne)
      offs_[n] = static_cast<uint32_t>(used + headroom_);
      lens_[n] = static_cast<uint32_t>(r);
      used += (headroom_ + static_cast<size_t>(r) + 7) & ~static_cast<size_t>(7);  // 8-byte aligned slots
      n++;
    }
    return n;
  }

  // One packet into `to` (maxPacket_ bytes): its length, 0 to skip it, -1 with errno set.
  ssize_t ReadOne(uint8_t* to) {
    if (!vnet_) return read(fd_, to, maxPacket_);
    virtio_net_hdr h;
    iovec iov[2] = {{&h, sizeof h}, {to, maxPacket_}};
    ssize_t r = readv(fd_, iov, 2);
    if (r < 0) return r;
    r -= static_cast<ssize_t>(sizeof h);
    if (r <= 0 || h.gso_type != VIRTIO_NET_HDR_GSO_NONE) return 0;  // we offered no TSO
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      // The kernel left the checksum to the "hardware": finish it (the field holds the
      // pseudo-header sum, so summing from csum_start over the rest gives the checksum).
      size_t at = h.csum_start + h.csum_offset;
      if (at + 2 > static_cast<size_t>(r)) return 0;
      uint16_t c = static_cast<uint16_t>(~Fold(Sum(to + h.csum_start, r - h.csum_start, 0)));
      to[at] = c >> 8;
      to[at + 1] = c & 0xff;
    }
    return r;
  }

  // The one's-complement sum of p[0, n) as big-endian 16-bit words, plus `sum` (not folded).
  // 8 bytes at a time in host order (the sum does not care about byte order until the
  // end), then the tail two bytes at a time.
  static uint32_t Sum(const uint8_t* p, size_t n, uint32_t sum) {
    uint64_t acc = 0;
    for (; n >= 8; p += 8, n -= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      acc += (w & 0xffffffffu) + (w >> 32);
    }
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    sum += ntohs(static_cast<uint16_t>(acc));
    for (; n > 1; p += 2, n -= 2) sum += (p[0] << 8) | p[1];
    if (n) sum += p[0] << 8;
    return sum;
  }
  static uint16_t Fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(sum);
  }

  // write(buffer, offset, length) -> bytes written, or -errno (EAGAIN: queue full, packet dropped)
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) { TunError(env, EBADF, "write").ThrowAsJavaScriptException(); return env.Undefined(); }
    Args a(info, "Tun.write");
    View<uint8_t> buf;
    size_t off = 0, len = 0;
    if (!a.Array(info[0], "buffer", &buf) || !a.OptInt(info[1], "offset", 0, buf.len, &off)) return env.Undefined();
    len = buf.len - off;
    if (!a.OptInt(info[2], "length", 0, buf.len - off, &len)) return env.Undefined();
    ssize_t r = WriteOne(buf.data + off, len);
    int err = errno;
    if (r >= 0) NoteHandoff();
    return Napi::Number::New(env, r < 0 ? -err : r);
  }

  // One packet as it is (with GRO: behind an empty virtio_net_hdr, "nothing offloaded").
  ssize_t WriteOne(const uint8_t* p, size_t len) {
    ssize_t r;
    if (!vnet_) {
      do { r = ::write(fd_, p, len); } while (r < 0 && errno == EINTR);
      return r;
    }
    virtio_net_hdr h{};
    iovec iov[2] = {{&h, sizeof h}, {const_cast<uint8_t*>(p), len}};
    do { r = writev(fd_, iov, 2); } while (r < 0 && errno == EINTR);
    return r < 0 ? r : r - static_cast<ssize_t>(sizeof h);
  }

  Napi::Value Handle(const Napi::CallbackInfo& info) { return NewObjHandle(info.Env(), this); }

 public:
  // tunWrite(tun, batch, count) -> number of packets the kernel took: the first `count`
  // packets of a registered batch (handles: see handle.h). A TUN fd takes one packet per
  // write() (or one merged packet, with GRO); the batch saves the JS->native crossings.
  static Napi::Value WriteHandles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Tun* t = ObjFromHandle<Tun>(env, info[0], "tunWrite");
    BatchRef* b = t ? BatchFromHandle(env, info[1], "tunWrite") : nullptr;
    if (!b) return env.Undefined();
    uint32_t count = 0;
    if (!Args(info, "tunWrite").Int(info[2], "count", 0, b->cap, &count)) return env.Undefined();
    if (t->fd_ < 0) { TunError(env, EBADF, "tunWrite").ThrowAsJavaScriptException(); return env.Undefined(); }
    uint32_t ok = 0;
    for (uint32_t i = 0; i < count;) {
      if (static_cast<size_t>(b->offs[i]) + b->lens[i] > b->bufLen) { i++; continue; }
      uint32_t n = t->gro_ ? t->WriteMerged(b->buf, b->bufLen, b->offs + i, b->lens + i, count - i) : 0;
      if (n > 0) { ok += n; i += n; continue; }
      if (t->WriteOne(b->buf + b->offs[i], b->lens[i]) >= 0) ok++;
      i++;
    }
    if (ok > 0) NoteHandoff();
    t->Publish();
    return Napi::Number::New(env, ok);
  }

  // tunRead(tun) -> packets read into start()'s batch right now (0: none queued, or not
  // started), without calling back: for what the kernel answered within a write (tun.ts,
  // Tun.readNow), handed to the callback by JavaScript itself.
  static Napi::Value ReadHandles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Tun* t = ObjFromHandle<Tun>(env, info[0], "tunRead");
    if (!t) return env.Undefined();
    uint32_t n = t->fd_ >= 0 && t->polling() ? t->Fill() : 0;
    NoteRead(static_cast<int>(n));
    return Napi::Number::New(env, n);
  }

 private:

  // ---- GRO: merging a TCP flow's consecutive segments into one write --------------------

  // A segment we may merge: IPv4 without options or fragmentation, DF set, or IPv6 with TCP
  // right after its fixed header (no extension headers); TCP with data and only ACK (and PSH)
  // set. Returns the IP header length (20 or 40) and sets *thl to the TCP header's; 0 if it
  // is not one.
  static uint32_t Mergeable(const uint8_t* p, size_t len, uint32_t* thl) {
    uint32_t ih;
    if (len >= 40 && p[0] == 0x45 && p[9] == IPPROTO_TCP) {
      if (static_cast<size_t>((p[2] << 8) | p[3]) != len || p[6] != 0x40 || p[7] != 0) return 0;  // DF set, not a fragment
      ih = 20;
    } else if (len >= 60 && (p[0] >> 4) == 6 && p[6] == IPPROTO_TCP) {
      if (static_cast<size_t>((p[4] << 8) | p[5]) + 40 != len) return 0;
      ih = 40;
    } else {
      return 0;
    }
    uint32_t t = (p[ih + 12] >> 4) * 4u;
    if (t < 20 || ih + t >= len) return 0;  // no payload: nothing to merge
    if ((p[ih + 13] & ~0x08) != 0x10) return 0;  // ACK, maybe PSH; no SYN/FIN/RST/URG/ECE/CWR
    *thl = t;
    return ih;
  }
  static uint32_t Seq(const uint8_t* tcp) {
    return static_cast<uint32_t>(tcp[4]) << 24 | static_cast<uint32_t>(tcp[5]) << 16 | static_cast<uint32_t>(tcp[6]) << 8 | tcp[7];
  }

  // The TCP pseudo-header's sum (addresses, protocol, TCP length) for IP header length ih.
  static uint32_t PseudoSum(const uint8_t* p, uint32_t ih, uint32_t tcpLen) {
    return ih == 20 ? Sum(p + 12, 8, IPPROTO_TCP + tcpLen) : Sum(p + 8, 32, IPPROTO_TCP + tcpLen);
  }

  // Whether the segment's TCP checksum is right. A merged packet's checksum is left to the
  // kernel, which then trusts it, so each segment is checked here, where the kernel would
  // have checked it: a corrupt one is written alone and the kernel drops it as before.
  static bool TcpChecksumOk(const uint8_t* p, size_t len, uint32_t ih) {
    return Fold(Sum(p + ih, len - ih, PseudoSum(p, ih, static_cast<uint32_t>(len - ih)))) == 0xffff;
  }

  // Same flow and same IP headers but for length, id and checksum (IPv4: TOS, TTL, addresses;
  // IPv6: version, traffic class, flow label, hop limit, addresses).
  static bool SameIp(const uint8_t* p, const uint8_t* first, uint32_t ih) {
    if (ih == 20) return p[1] == first[1] && p[8] == first[8] && memcmp(p + 12, first + 12, 8) == 0;
    return memcmp(p, first, 4) == 0 && p[7] == first[7] && memcmp(p + 8, first + 8, 32) == 0;
  }

  // The IP packet of a frame: on a TUN the frame itself; on a TAP what follows an Ethernet
  // header of type IPv4 or IPv6 whose packet has that version (nullptr for anything else,
  // which is then written alone, as the kernel would judge it).
  const uint8_t* IpOf(const uint8_t* f, size_t flen, size_t* len) const {
    if (l2_ == 0) { *len = flen; return f; }
    if (flen <= l2_) return nullptr;
    uint8_t v = f[l2_] >> 4;
    bool ok = (f[12] == 0x08 && f[13] == 0x00 && v == 4) || (f[12] == 0x86 && f[13] == 0xdd && v == 6);
    if (!ok) return nullptr;
    *len = flen - l2_;
    return f + l2_;
  }

  // Writes packets [0, count) starting with the first as one merged packet if at least two
  // of them belong together; returns how many it wrote (0: the first is written alone).
  uint32_t WriteMerged(const uint8_t* base, size_t baseLen, const uint32_t* offs, const uint32_t* lens, uint32_t count) {
    size_t len0 = 0;
    const uint8_t* frame0 = base + offs[0];
    const uint8_t* first = IpOf(frame0, lens[0], &len0);
    uint32_t thl = 0;
    uint32_t ih = first ? Mergeable(first, len0, &thl) : 0;
    if (ih == 0 || count < 2 || !TcpChecksumOk(first, len0, ih)) return 0;
    const uint8_t* ftcp = first + ih;
    uint32_t hlen = ih + thl, mss = len0 - hlen;
    uint32_t total = len0, nextSeq = Seq(ftcp) + mss;
    bool psh = ftcp[13] & 0x08;
    uint32_t n = 1, lastPay = mss;
    iovec iov[2 + kMaxMerge];  // virtio_net_hdr, merged headers, then each segment's payload
    iov[2] = {const_cast<uint8_t*>(first + hlen), mss};
    while (n < count && n < kMaxMerge && !psh && lastPay == mss) {
      size_t len = 0;
      uint32_t pthl = 0;
      if (offs[n] + lens[n] > baseLen) break;
      const uint8_t* p = IpOf(base + offs[n], lens[n], &len);
      if (!p || Mergeable(p, len, &pthl) != ih || pthl != thl) break;
      if (l2_ && memcmp(base + offs[n], frame0, l2_) != 0) break;  // (TAP) the same MACs and type
      const uint8_t* tcp = p + ih;
      uint32_t pay = len - hlen;
      // Same flow and same headers but for length, id, checksums, seq and PSH; in order.
      if (pay > mss || total + pay > 65535 || Seq(tcp) != nextSeq) break;
      if (!SameIp(p, first, ih)) break;
      if (memcmp(tcp, ftcp, 4) != 0 || memcmp(tcp + 8, ftcp + 8, 4) != 0) break;  // ports, ack
      if (memcmp(tcp + 14, ftcp + 14, 2) != 0 || memcmp(tcp + 20, ftcp + 20, thl - 20) != 0) break;  // window, options
      if (!TcpChecksumOk(p, len, ih)) break;
      iov[2 + n] = {const_cast<uint8_t*>(p + hlen), pay};
      psh = tcp[13] & 0x08;
      total += pay;
      nextSeq += pay;
      lastPay = pay;
      n++;
    }
    if (n < 2) return 0;

    // The merged packet's headers: the first segment's, with the total length (IPv4: and a
    // fresh IP checksum; IPv6: the payload length), PSH if the last had it, and in the TCP
    // checksum field the pseudo-header sum, which the kernel completes (NEEDS_CSUM) while it
    // segments or delivers the packet. On a TAP the Ethernet header stays in front.
    uint8_t eth_ip[kEtherHeader + 40 + 60];
    memcpy(eth_ip, frame0, l2_);
    uint8_t* hdr = eth_ip + l2_;
    memcpy(hdr, first, hlen);
    if (ih == 20) {
      hdr[2] = total >> 8;
      hdr[3] = total & 0xff;
      hdr[10] = hdr[11] = 0;
      uint16_t ipsum = static_cast<uint16_t>(~Fold(Sum(hdr, 20, 0)));
      hdr[10] = ipsum >> 8;
      hdr[11] = ipsum & 0xff;
    } else {
      hdr[4] = (total - 40) >> 8;
      hdr[5] = (total - 40) & 0xff;
    }
    if (psh) hdr[ih + 13] |= 0x08;
    uint16_t pseudo = Fold(PseudoSum(hdr, ih, total - ih));
    hdr[ih + 16] = pseudo >> 8;
    hdr[ih + 17] = pseudo & 0xff;

    virtio_net_hdr h{};
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.gso_type = ih == 20 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
    h.hdr_len = static_cast<uint16_t>(l2_ + hlen);
    h.gso_size = static_cast<uint16_t>(mss);
    h.csum_start = static_cast<uint16_t>(l2_ + ih);
    h.csum_offset = 16;
    iov[0] = {&h, sizeof h};
    iov[1] = {eth_ip, l2_ + hlen};
    ssize_t r;
    do { r = writev(fd_, iov, static_cast<int>(2 + n)); } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EINVAL) {
      gro_ = false;  // a kernel that takes no GSO from a TUN: from now on, one write per packet
      return 0;
    }
    if (r >= 0) coalesced_ += n - 1;
    return n;  // written, or lost together (queue full) as single writes would have been
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value RefJs(const Napi::CallbackInfo& info) { SetRef(true); return info.Env().Undefined(); }
  Napi::Value UnrefJs(const Napi::CallbackInfo& info) { SetRef(false); return info.Env().Undefined(); }
  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  // bindStatus(Float64Array of 2): where Publish() keeps [gro, coalesced], so JavaScript reads
  // them after each write without another native call (as a DTLS connection's status).
  Napi::Value BindStatus(const Napi::CallbackInfo& info) {
    if ((status_ = BindStatusArray(info, "Tun.bindStatus", 2, statusRef_))) Publish();
    return info.Env().Undefined();
  }
  void Publish() {
    if (!status_) return;
    status_[0] = gro_ ? 1 : 0;
    status_[1] = static_cast<double>(coalesced_);
  }

  // Stops the reader and closes the fd; closing the last fd removes a non-persistent TUN.
  void Shutdown() {
    if (StopPoll()) {
      cb_.Reset();
      bufRef_.Reset();
      offRef_.Reset();
      lenRef_.Reset();
      Napi::ObjectWrap<Tun>::Unref();  // balance the Ref() taken in Start
    }
    CloseFd();
  }

  std::string name_;
  Napi::FunctionReference cb_;
  Napi::ObjectReference bufRef_, offRef_, lenRef_;
  uint8_t* buf_ = nullptr;
  size_t bufLen_ = 0;
  uint32_t* offs_ = nullptr;
  uint32_t* lens_ = nullptr;
  size_t maxCount_ = 0;
  uint32_t maxPacket_ = 0;
  uint32_t headroom_ = 0;
  // GRO
  static constexpr uint32_t kMaxMerge = 64;  // segments per merged packet (64 KB of 1 KB+ segments)
  static constexpr uint32_t kEtherHeader = 14;
  uint32_t l2_ = 0;    // bytes of link header in front of the IP packet: 14 on a TAP, 0 on a TUN
  bool vnet_ = false;  // the fd has IFF_VNET_HDR: every read and write carries a virtio_net_hdr
  bool gro_ = false;   // merge segments in tunWrite (vnet_, and the kernel has not refused it)
  uint64_t coalesced_ = 0;
  double* status_ = nullptr;  // [gro, coalesced], see Publish
  Napi::ObjectReference statusRef_;
};

}  // namespace

Napi::Object InitTun(Napi::Env env, Napi::Object exports) {
  exports.Set("Tun", Tun::Define(env));
  exports.Set("tunWrite", Napi::Function::New<Tun::WriteHandles>(env, "tunWrite"));
  exports.Set("tunRead", Napi::Function::New<Tun::ReadHandles>(env, "tunRead"));
  return exports;
}
