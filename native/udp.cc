// The UDP socket, read and written in batches.
//
// Why native: Node's dgram delivers one datagram per event, each with a new Buffer and a
// new address object, and sends one datagram per call. A VPN moves tens of thousands of
// datagrams a second, so we poll the socket ourselves and use recvmmsg/sendmmsg: one
// system call and one JS call per batch, into buffers JavaScript gave us once.
// Policy (which address to bind, whom to talk to) stays in JavaScript.
//
// Peer addresses cross to JavaScript as 16 bytes (IPv6, or IPv4-mapped ::ffff:a.b.c.d)
// plus a port, so the JS side can key its peer table by numbers instead of strings.
#include <napi.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "handle.h"
#include "poll.h"

namespace {

Napi::Error SockError(Napi::Env env, int err, const std::string& what) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

// A peer's address, made once per peer (udpPeer) in both forms a socket may need.
struct PeerAddr {
  static constexpr uint32_t kTag = 0x70656572;  // "peer"
  static constexpr const char* kName = "peer address";
  HandleHead head{kTag};
  sockaddr_in6 v6{};  // for a dual-stack socket (IPv4 peers as ::ffff:a.b.c.d)
  sockaddr_in v4{};   // for an IPv4 socket
};

// udpPeer(addr16: Buffer, port) -> a peer handle for udpSend.
Napi::Value MakePeer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args args(info, "udpPeer");
  View<uint8_t> addr;
  uint16_t hport = 0;
  if (!args.Array(info[0], "addr16", &addr) || !args.Int(info[1], "port", 0, 65535, &hport)) return env.Undefined();
  if (addr.len != 16) { args.RangeFail("addr16: expected 16 bytes, got " + std::to_string(addr.len)); return env.Undefined(); }
  const uint8_t* a = addr.data;
  uint16_t port = htons(hport);
  auto* p = new PeerAddr();
  p->v6.sin6_family = AF_INET6;
  p->v6.sin6_port = port;
  memcpy(&p->v6.sin6_addr, a, 16);
  p->v4.sin_family = AF_INET;
  p->v4.sin_port = port;
  memcpy(&p->v4.sin_addr, a + 12, 4);
  return Napi::External<PeerAddr>::New(env, p, [](Napi::Env, PeerAddr* q) { delete q; });
}

class Udp : public Wrapped<Udp>, public PolledFd {
 public:
  static constexpr uint32_t kHandleTag = 0x75647030;  // "udp0"
  static constexpr const char* kHandleName = "UDP socket";
  static constexpr const char* kClassName = "Udp";
  static constexpr napi_type_tag kTypeTag = {0xcf42ed52b73f53ef, 0xa6701d9ccdad531e};
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Udp", {
      InstanceMethod<&Udp::Bind>("bind"),
      InstanceMethod<&Udp::Connect>("connect"),
      InstanceMethod<&Udp::Start>("start"),
      InstanceMethod<&Udp::Handle>("handle"),
      InstanceMethod<&Udp::Close>("close"),
      InstanceMethod<&Udp::RefJs>("ref"),
      InstanceMethod<&Udp::UnrefJs>("unref"),
      InstanceMethod<&Udp::LocalAddress>("localAddress"),
      InstanceAccessor<&Udp::GsoGetter>("gso"),
    });
  }

  // new Udp(family: 4 | 6, bufferBytes, gso). A family-6 socket is dual stack (IPv4 too).
  explicit Udp(const Napi::CallbackInfo& info) : Wrapped<Udp>(info) {
    Napi::Env env = info.Env();
    Args a(info, "new Udp");
    double family = 0;
    int bytes = 4 << 20;
    if (!a.Number(info[0], "family", -INFINITY, INFINITY, &family)) return;
    if (family != 4 && family != 6) { a.RangeFail("family: expected 4 or 6, got " + Args::Text(family)); return; }
    if (!a.OptInt(info[1], "bufferBytes", 0, INT32_MAX, &bytes) || !a.OptBool(info[2], "gso", &gso_)) return;
    v6_ = family == 6;
    int fd = socket(v6_ ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { SockError(env, errno, "socket").ThrowAsJavaScriptException(); return; }
    if (v6_) { int off = 0; setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off); }
    // Large buffers absorb bursts; the FORCE variants pass the sysctl cap when we are root.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    // The receiving half of segmentation offload: with UDP_GRO the kernel hands us runs of
    // same-size datagrams from one sender as one message (a GSO run from a peer on this
    // machine stays whole; from a NIC, GRO may build one), and we cut it into datagrams.
    int one = 1;
    if (gso_ && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0) gro_ = true;
    Adopt(env, fd);
  }

  ~Udp() override { Shutdown(); }

 private:
  bool ToSockaddr(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len) {
    memset(ss, 0, sizeof *ss);
    if (v6_) {
      auto* a = reinterpret_cast<sockaddr_in6*>(ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      std::string h = host;
      in_addr v4;
      if (inet_pton(AF_INET, h.c_str(), &v4) == 1) h = "::ffff:" + h;
      if (inet_pton(AF_INET6, h.c_str(), &a->sin6_addr) != 1) return false;
      *len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return false;
      *len = sizeof *a;
    }
    return true;
  }

  static bool HostPort(const Napi::CallbackInfo& info, const char* fn, std::string* host, int* port) {
    Args a(info, fn);
    return a.String(info[0], "host", host) && a.Int(info[1], "port", 0, 65535, port);
  }

  // bind(host, port) -> the port actually bound (port 0 lets the kernel choose)
  Napi::Value Bind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string host;
    int port = 0;
    if (!HostPort(info, "Udp.bind", &host, &port)) return env.Undefined();
    sockaddr_storage ss;
    socklen_t len;
    if (!ToSockaddr(host, port, &ss, &len)) { Napi::Error::New(env, "bind: bad address " + host).ThrowAsJavaScriptException(); return env.Undefined(); }
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      SockError(env, errno, "bind " + host + ":" + std::to_string(port)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return LocalAddress(info).As<Napi::Object>().Get("port");
  }

  // connect(host, port): a client talks to one server; the kernel then filters other sources.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string host;
    int port = 0;
    if (!HostPort(info, "Udp.connect", &host, &port)) return env.Undefined();
    sockaddr_storage ss;
    socklen_t len;
    if (!ToSockaddr(host, port, &ss, &len)) { Napi::Error::New(env, "connect: bad address " + host).ThrowAsJavaScriptException(); return env.Undefined(); }
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      SockError(env, errno, "connect " + host + ":" + std::to_string(port)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    connected_ = true;
    return env.Undefined();
  }

  Napi::Value LocalAddress(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      SockError(env, errno, "localAddress").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    char text[INET6_ADDRSTRLEN] = {0};
    int port = 0;
    if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
      port = ntohs(a->sin6_port);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
      port = ntohs(a->sin_port);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("address", text);
    o.Set("port", port);
    return o;
  }

  // start(buf, offs, lens, addrs: Buffer (16 bytes per slot), ports: Uint32Array, slotSize, onDatagrams)
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (polling()) { Napi::Error::New(env, "UDP reader already started").ThrowAsJavaScriptException(); return env.Undefined(); }
    if (fd_ < 0) { SockError(env, EBADF, "start").ThrowAsJavaScriptException(); return env.Undefined(); }
    Args a(info, "Udp.start");
    View<uint8_t> buf, addrs;
    View<uint32_t> offs, lens, ports;
    uint32_t slot = 0;
    Napi::Function cb;
    if (!a.Array(info[0], "buf", &buf, true) || !a.Array(info[1], "offs", &offs, true) || !a.Array(info[2], "lens", &lens, true) ||
        !a.Array(info[3], "addrs", &addrs, true) || !a.Array(info[4], "ports", &ports, true) ||
        !a.Int(info[5], "slotSize", 1, 1 << 30, &slot) || !a.Function(info[6], "onDatagrams", &cb)) {
      return env.Undefined();
    }
    // The batch holds as many datagrams as every array has room for.
    size_t n = std::min({offs.len, lens.len, ports.len, addrs.len / 16, buf.len / slot});
    if (n == 0) {
      a.RangeFail("the arrays hold no datagram (buf " + std::to_string(buf.len) + " bytes for slotSize " + std::to_string(slot) +
                  ", offs " + std::to_string(offs.len) + ", lens " + std::to_string(lens.len) + ", ports " +
                  std::to_string(ports.len) + ", addrs " + std::to_string(addrs.len) + " bytes, 16 per datagram)");
      return env.Undefined();
    }
    slot_ = slot;
    refs_[0] = Napi::Persistent(buf.obj);
    refs_[1] = Napi::Persistent(offs.obj);
    refs_[2] = Napi::Persistent(lens.obj);
    refs_[3] = Napi::Persistent(addrs.obj);
    refs_[4] = Napi::Persistent(ports.obj);
    cb_ = Napi::Persistent(cb);
    offs_ = offs.data;
    lens_ = lens.data;
    addrs_ = addrs.data;
    ports_ = ports.data;
    // The message headers point into the JS buffer once; recvmmsg fills them in place.
    msgs_.assign(n, mmsghdr{});
    iovs_.assign(n, iovec{});
    names_.assign(n, sockaddr_storage{});
    for (size_t i = 0; i < n; i++) {
      iovs_[i].iov_base = buf.data + i * slot_;
      iovs_[i].iov_len = slot_;
      msgs_[i].msg_hdr.msg_iov = &iovs_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = &names_[i];
    }
    if (!StartPoll(env)) { SockError(env, EBADF, "start").ThrowAsJavaScriptException(); return env.Undefined(); }
    Napi::ObjectWrap<Udp>::Ref();
    return env.Undefined();
  }

  void OnReadable() override {
    if (gro_) return ReadGro();
    int n = Fill();
    if (n != 0) Deliver(n);
  }

  // One recvmmsg into the batch: how many datagrams, 0 for none (EAGAIN), or -errno. An error
  // such as ECONNREFUSED (an ICMP port unreachable on a connected socket) goes to JS as a
  // negative count: the socket reports it once, so it must not be dropped here.
  int Fill() {
    for (auto& m : msgs_) m.msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    int n;
    do { n = recvmmsg(fd_, msgs_.data(), msgs_.size(), MSG_DONTWAIT, nullptr); } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    for (int i = 0; i < n; i++) {
      offs_[i] = static_cast<uint32_t>(i * slot_);
      lens_[i] = msgs_[i].msg_len;
      SetPeer(i, &names_[i]);
    }
    return n;
  }

  // The UDP_GRO read: messages land in our staging buffers (a run can be 64 KB), and each is
  // cut at its segment size into the JS batch's slots; a full batch goes to JS and filling
  // goes on, so one read may make several callbacks.
  static constexpr size_t kGroBytes = 65536;
  void ReadGro() {
    size_t cap = msgs_.size();
    if (cap == 0) return;
    if (groBuf_.empty()) {
      groBuf_.resize(cap * kGroBytes);
      groIov_.resize(cap);
      groMsgs_.assign(cap, mmsghdr{});
      groCtrl_.resize(cap);
      for (size_t i = 0; i < cap; i++) {
        groIov_[i].iov_base = groBuf_.data() + i * kGroBytes;
        groIov_[i].iov_len = kGroBytes;
        msghdr& h = groMsgs_[i].msg_hdr;
        h.msg_iov = &groIov_[i];
        h.msg_iovlen = 1;
        h.msg_name = &names_[i];
        h.msg_control = groCtrl_[i].buf;
      }
    }
    // recvmmsg shrinks these to what it filled in: give the full sizes back.
    for (size_t i = 0; i < cap; i++) {
      groMsgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      groMsgs_[i].msg_hdr.msg_controllen = sizeof groCtrl_[i].buf;
    }
    int n;
    do { n = recvmmsg(fd_, groMsgs_.data(), cap, MSG_DONTWAIT, nullptr); } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) Deliver(-errno);
      return;
    }
    size_t k = 0;  // datagrams in the JS batch so far
    for (int i = 0; i < n && fd_ >= 0; i++) {
      const mmsghdr& m = groMsgs_[i];
      size_t total = m.msg_len, seg = total;
      for (cmsghdr* h = CMSG_FIRSTHDR(&m.msg_hdr); h; h = CMSG_NXTHDR(const_cast<msghdr*>(&m.msg_hdr), h)) {
        if (h->cmsg_level == SOL_UDP && h->cmsg_type == UDP_GRO) {
          int size;
          memcpy(&size, CMSG_DATA(h), sizeof size);
          if (size > 0) seg = static_cast<size_t>(size);
        }
      }
      const uint8_t* p = static_cast<const uint8_t*>(groIov_[i].iov_base);
      for (size_t at = 0; at < total; at += seg) {
        size_t len = std::min(seg, total - at);
        if (len > slot_) continue;  // larger than a slot: cannot be ours (slots hold an MTU)
        memcpy(static_cast<uint8_t*>(iovs_[k].iov_base), p + at, len);
        offs_[k] = static_cast<uint32_t>(k * slot_);
        lens_[k] = static_cast<uint32_t>(len);
        SetPeer(k, &names_[i]);
        if (++k == cap) { Deliver(static_cast<double>(k)); k = 0; if (fd_ < 0) return; }
      }
    }
    if (k) Deliver(static_cast<double>(k));
  }

  void SetPeer(size_t k, const sockaddr_storage* ss) {
    uint8_t* a = addrs_ + 16 * k;
    if (ss->ss_family == AF_INET6) {
      auto* s6 = reinterpret_cast<const sockaddr_in6*>(ss);
      memcpy(a, &s6->sin6_addr, 16);
      ports_[k] = ntohs(s6->sin6_port);
    } else {
      auto* s4 = reinterpret_cast<const sockaddr_in*>(ss);
      memset(a, 0, 10);
      a[10] = a[11] = 0xff;  // IPv4-mapped
      memcpy(a + 12, &s4->sin_addr, 4);
      ports_[k] = ntohs(s4->sin_port);
    }
  }

  // Hands JS the batch: k datagrams, or a negative errno.
  void Deliver(double k) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    CallJs(env, cb_, Value(), k, LoopNow());
  }

  void OnError() override {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);  // reading it clears it
    if (err == 0 || cb_.IsEmpty()) return;
    Deliver(-err);
  }

  Napi::Value Handle(const Napi::CallbackInfo& info) { return NewObjHandle(info.Env(), this); }

 public:
  // udpRead(udp) -> datagrams read into start()'s batch right now (0: none queued, not
  // started, or a UDP_GRO socket, whose one read may fill several batches; -errno: an error),
  // without calling back: for a reply that arrived while we yielded after a send (udp.ts,
  // UdpSocket.readNow), handed to the callback by JavaScript itself.
  static Napi::Value ReadHandles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Udp* u = ObjFromHandle<Udp>(env, info[0], "udpRead");
    if (!u) return env.Undefined();
    int n = u->fd_ >= 0 && u->polling() && !u->gro_ && !u->msgs_.empty() ? u->Fill() : 0;
    NoteRead(n);
    return Napi::Number::New(env, n);
  }

  // udpSend(udp, batch, count, peer | null) -> datagrams the kernel took: the first `count`
  // packets of a registered batch (handles: see handle.h), all to one peer (null: the
  // connected one), as a batch sealed for one session is. One sendmmsg call.
  static Napi::Value SendHandles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Udp* u = ObjFromHandle<Udp>(env, info[0], "udpSend");
    BatchRef* b = u ? BatchFromHandle(env, info[1], "udpSend") : nullptr;
    if (!b) return env.Undefined();
    PeerAddr* peer = nullptr;
    if (!info[3].IsNull() && !(peer = FromHandle<PeerAddr>(env, info[3], "udpSend"))) return env.Undefined();
    size_t count = 0;
    if (!Args(info, "udpSend").Int(info[2], "count", 0, b->cap, &count)) return env.Undefined();
    size_t sent = u->Send(b, count, peer);
    if (sent > 0) NoteHandoff();
    return Napi::Number::New(env, static_cast<double>(sent));
  }

 private:
  size_t Send(const BatchRef* b, size_t count, PeerAddr* peer) {
    if (fd_ < 0) return 0;
    const uint8_t* buf = b->buf;
    const uint32_t* offs = b->offs;
    const uint32_t* lens = b->lens;
    void* name = nullptr;
    socklen_t slen = 0;
    if (peer && v6_) { name = &peer->v6; slen = sizeof peer->v6; }
    if (peer && !v6_) { name = &peer->v4; slen = sizeof peer->v4; }
    if (out_.size() < count) { out_.resize(count); outIov_.resize(count); segs_.resize(count); ctrl_.resize(count); }
    // Each message is a run of datagrams; with GSO a run is several datagrams of one size
    // (the last may be shorter) that the kernel sends as one: one trip through the stack
    // (routing, netfilter, the veth or NIC queue) per run instead of per datagram, cut into
    // datagrams as late as possible. Without GSO every run is one datagram.
    size_t nmsg = 0, k = 0;
    for (size_t i = 0; i < count; i++) {
      if (static_cast<size_t>(offs[i]) + lens[i] > b->bufLen || lens[i] == 0) continue;
      outIov_[k].iov_base = const_cast<uint8_t*>(buf) + offs[i];
      outIov_[k].iov_len = lens[i];
      mmsghdr* prev = nmsg ? &out_[nmsg - 1] : nullptr;
      if (gso_ && prev && CanJoin(prev, lens[i])) {
        prev->msg_hdr.msg_iovlen++;
        segs_[nmsg - 1]++;
        k++;
        continue;
      }
      mmsghdr& m = out_[nmsg];
      memset(&m, 0, sizeof m);
      m.msg_hdr.msg_iov = &outIov_[k];
      m.msg_hdr.msg_iovlen = 1;
      if (slen) { m.msg_hdr.msg_name = name; m.msg_hdr.msg_namelen = slen; }
      segs_[nmsg] = 1;
      nmsg++;
      k++;
    }
    if (gso_) for (size_t j = 0; j < nmsg; j++) if (segs_[j] > 1) SetSegment(&out_[j], &ctrl_[j]);
    size_t done = 0, sent = 0;
    bool retried = false;
    while (done < nmsg) {
      int r = sendmmsg(fd_, out_.data() + done, nmsg - done, MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        // A pending ICMP error is reported by (and cleared by) the next send, which then
        // did not go out: try once more.
        if ((errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) && !retried) { retried = true; continue; }
        // A route or device that cannot take segmentation offload refuses the run: EIO (no
        // checksum offload), EMSGSIZE or EINVAL (segments above the route's MTU). Send it,
        // and everything after, one datagram per message, and from now on without GSO.
        if ((errno == EIO || errno == EMSGSIZE || errno == EINVAL) && out_[done].msg_hdr.msg_controllen) {
          gso_ = false;
          gsoFailed_ = true;
          sent += SendPlain(&out_[done], nmsg - done);
          break;
        }
        break;  // EAGAIN (buffer full) drops the rest, as a router would
      }
      for (int j = 0; j < r; j++) sent += segs_[done + j];
      done += r;
    }
    return sent;
  }

  // Largest run: UDP's 16-bit length (and the kernel's segment limit of 64) bounds a message.
  static constexpr size_t kMaxRunBytes = 60000;
  static constexpr size_t kMaxSegments = 64;

  // May a datagram of `len` bytes join the run in m? Runs are datagrams of one size; a
  // shorter one may end a run, so a run whose last datagram is shorter is closed.
  bool CanJoin(const mmsghdr* m, size_t len) const {
    const iovec* iov = m->msg_hdr.msg_iov;
    size_t n = m->msg_hdr.msg_iovlen, size = iov[0].iov_len;
    if (n >= kMaxSegments || len > size || iov[n - 1].iov_len != size) return false;
    return (n + 1) * size <= kMaxRunBytes;
  }

  struct SegmentCmsg { alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(uint16_t))]; };

  static void SetSegment(mmsghdr* m, SegmentCmsg* c) {
    m->msg_hdr.msg_control = c->buf;
    m->msg_hdr.msg_controllen = sizeof c->buf;
    cmsghdr* h = CMSG_FIRSTHDR(&m->msg_hdr);
    h->cmsg_level = SOL_UDP;
    h->cmsg_type = UDP_SEGMENT;
    h->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t size = static_cast<uint16_t>(m->msg_hdr.msg_iov[0].iov_len);
    memcpy(CMSG_DATA(h), &size, sizeof size);
  }

  // The fallback: the runs in msgs[0..n) sent one datagram per message, without GSO.
  size_t SendPlain(const mmsghdr* msgs, size_t n) {
    std::vector<mmsghdr> one;
    for (size_t j = 0; j < n; j++) {
      for (size_t i = 0; i < msgs[j].msg_hdr.msg_iovlen; i++) {
        mmsghdr m;
        memset(&m, 0, sizeof m);
        m.msg_hdr.msg_name = msgs[j].msg_hdr.msg_name;
        m.msg_hdr.msg_namelen = msgs[j].msg_hdr.msg_namelen;
        m.msg_hdr.msg_iov = msgs[j].msg_hdr.msg_iov + i;
        m.msg_hdr.msg_iovlen = 1;
        one.push_back(m);
      }
    }
    size_t sent = 0;
    while (sent < one.size()) {
      int r = sendmmsg(fd_, one.data() + sent, one.size() - sent, MSG_DONTWAIT);
      if (r < 0) { if (errno == EINTR) continue; break; }
      sent += r;
    }
    return sent;
  }

  Napi::Value GsoGetter(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), gso_ ? "on" : gsoFailed_ ? "refused by the route" : "off");
  }

  void Shutdown() {
    if (StopPoll()) {
      cb_.Reset();
      for (auto& r : refs_) r.Reset();
      Napi::ObjectWrap<Udp>::Unref();
    }
    CloseFd();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) { Shutdown(); return info.Env().Undefined(); }
  Napi::Value RefJs(const Napi::CallbackInfo& info) { SetRef(true); return info.Env().Undefined(); }
  Napi::Value UnrefJs(const Napi::CallbackInfo& info) { SetRef(false); return info.Env().Undefined(); }

  bool v6_ = false;
  bool gso_ = false;
  bool gsoFailed_ = false;
  bool gro_ = false;
  struct GroCmsg { alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(int))]; };
  std::vector<uint8_t> groBuf_;    // staging for UDP_GRO reads: kGroBytes per message
  std::vector<iovec> groIov_;
  std::vector<mmsghdr> groMsgs_;
  std::vector<GroCmsg> groCtrl_;
  bool connected_ = false;
  uint32_t slot_ = 0;
  Napi::FunctionReference cb_;
  Napi::ObjectReference refs_[5];
  uint32_t* offs_ = nullptr;
  uint32_t* lens_ = nullptr;
  uint8_t* addrs_ = nullptr;
  uint32_t* ports_ = nullptr;
  std::vector<mmsghdr> msgs_, out_;
  std::vector<iovec> iovs_, outIov_;
  std::vector<size_t> segs_;       // datagrams in each outgoing message
  std::vector<SegmentCmsg> ctrl_;  // its UDP_SEGMENT control message
  std::vector<sockaddr_storage> names_;
};

}  // namespace

Napi::Object InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("Udp", Udp::Define(env));
  exports.Set("udpSend", Napi::Function::New<Udp::SendHandles>(env, "udpSend"));
  exports.Set("udpRead", Napi::Function::New<Udp::ReadHandles>(env, "udpRead"));
  exports.Set("udpPeer", Napi::Function::New<MakePeer>(env, "udpPeer"));
  return exports;
}
