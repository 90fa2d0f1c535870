// TUN device: open with the TUNSETIFF ioctl and read packets in batches.
//
// Why native: Node cannot issue ioctls, and net.Socket refuses a TUN fd. Reading on the libuv
// thread pool costs a thread per pending read and blocks shutdown, so instead we watch the
// non-blocking fd with uv_poll on the event loop thread and, per wakeup, read as many packets
// as fit into a buffer that JavaScript gave us once. JavaScript then gets one call per batch:
// onPackets(count), with offsets and lengths filled in. Nothing is allocated per packet.
#include <napi.h>
#include <uv.h>

#include "poll.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

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

class Tun : public Napi::ObjectWrap<Tun>, public PolledFd {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tun", {
      InstanceMethod<&Tun::Start>("start"),
      InstanceMethod<&Tun::Write>("write"),
      InstanceMethod<&Tun::WriteBatch>("writeBatch"),
      InstanceMethod<&Tun::Close>("close"),
      InstanceMethod<&Tun::RefJs>("ref"),
      InstanceMethod<&Tun::UnrefJs>("unref"),
      InstanceAccessor<&Tun::Name>("name"),
      InstanceAccessor<&Tun::Fd>("fd"),
    });
  }

  // new Tun(name) opens the device; name '' lets the kernel pick (tun0, tun1, ...).
  explicit Tun(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tun>(info) {
    Napi::Env env = info.Env();
    std::string want = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
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
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;  // raw IP packets, no 4-byte packet-info header
    strncpy(ifr.ifr_name, want.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd_, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      ::close(fd_);
      fd_ = -1;
      TunError(env, err, "TUNSETIFF '" + want + "'").ThrowAsJavaScriptException();
      return;
    }
    name_ = ifr.ifr_name;
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
    if (info.Length() < 5 || !info[0].IsBuffer() || !info[1].IsTypedArray() || !info[2].IsTypedArray() ||
        !info[3].IsNumber() || !info[4].IsNumber() || !info[5].IsFunction()) {
      Napi::TypeError::New(env, "start(buffer, offsets, lengths, maxPacket, headroom, onPackets)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    auto offs = info[1].As<Napi::Uint32Array>();
    auto lens = info[2].As<Napi::Uint32Array>();
    bufRef_ = Napi::Persistent(buf.As<Napi::Object>());
    offRef_ = Napi::Persistent(offs.As<Napi::Object>());
    lenRef_ = Napi::Persistent(lens.As<Napi::Object>());
    cb_ = Napi::Persistent(info[5].As<Napi::Function>());
    buf_ = buf.Data();
    bufLen_ = buf.Length();
    offs_ = offs.Data();
    lens_ = lens.Data();
    maxCount_ = std::min(offs.ElementLength(), lens.ElementLength());
    maxPacket_ = info[3].As<Napi::Number>().Uint32Value();
    headroom_ = info[4].As<Napi::Number>().Uint32Value();
    if (maxPacket_ == 0 || maxPacket_ + headroom_ > bufLen_) {
      Napi::RangeError::New(env, "start: buffer smaller than one packet plus headroom").ThrowAsJavaScriptException();
      return env.Undefined();
    }

    if (!StartPoll(env)) { TunError(env, EBADF, "start").ThrowAsJavaScriptException(); return env.Undefined(); }
    Napi::ObjectWrap<Tun>::Ref();  // keep the JS object alive while the reader runs
    return env.Undefined();
  }

  void OnReadable() override { Drain(); }

  // Read until EAGAIN or until the batch is full; one JS call per batch. uv_poll is
  // level-triggered, so a full batch simply makes the loop call us again next turn,
  // which keeps one busy TUN from starving the UDP socket.
  void Drain() {
    size_t used = 0;
    uint32_t n = 0;
    while (n < maxCount_ && used + headroom_ + maxPacket_ <= bufLen_) {
      ssize_t r = read(fd_, buf_ + used + headroom_, maxPacket_);
      if (r < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: drained. Other errors: the next poll reports them again.
      }
      if (r == 0) break;
      offs_[n] = static_cast<uint32_t>(used + headroom_);
      lens_[n] = static_cast<uint32_t>(r);
      used += (headroom_ + static_cast<size_t>(r) + 7) & ~static_cast<size_t>(7);  // 8-byte aligned slots
      n++;
    }
    if (n == 0) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    // MakeCallback so that promise jobs and process.nextTick run after the batch, as for any I/O.
    cb_.MakeCallback(Value(), {Napi::Number::New(env, n)});
  }

  // write(buffer, offset, length) -> bytes written, or -errno (EAGAIN: queue full, packet dropped)
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) { TunError(env, EBADF, "write").ThrowAsJavaScriptException(); return env.Undefined(); }
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    size_t off = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 0;
    size_t len = info.Length() > 2 ? info[2].As<Napi::Number>().Uint32Value() : buf.Length() - off;
    if (off + len > buf.Length()) { Napi::RangeError::New(env, "write: range outside buffer").ThrowAsJavaScriptException(); return env.Undefined(); }
    ssize_t r;
    do { r = ::write(fd_, buf.Data() + off, len); } while (r < 0 && errno == EINTR);
    return Napi::Number::New(env, r < 0 ? -errno : r);
  }

  // writeBatch(buffer, offsets, lengths, count) -> number of packets the kernel took.
  // A TUN fd takes one packet per write(); the batch saves the JS->native crossings.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) { TunError(env, EBADF, "writeBatch").ThrowAsJavaScriptException(); return env.Undefined(); }
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    auto offs = info[1].As<Napi::Uint32Array>();
    auto lens = info[2].As<Napi::Uint32Array>();
    uint32_t count = info[3].As<Napi::Number>().Uint32Value();
    if (count > offs.ElementLength() || count > lens.ElementLength()) count = std::min(offs.ElementLength(), lens.ElementLength());
    uint32_t ok = 0;
    for (uint32_t i = 0; i < count; i++) {
      if (static_cast<size_t>(offs[i]) + lens[i] > buf.Length()) continue;
      ssize_t r;
      do { r = ::write(fd_, buf.Data() + offs[i], lens[i]); } while (r < 0 && errno == EINTR);
      if (r >= 0) ok++;
    }
    return Napi::Number::New(env, ok);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value RefJs(const Napi::CallbackInfo& info) { SetRef(true); return info.Env().Undefined(); }
  Napi::Value UnrefJs(const Napi::CallbackInfo& info) { SetRef(false); return info.Env().Undefined(); }
  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

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
};

}  // namespace

Napi::Object InitTun(Napi::Env env, Napi::Object exports) {
  exports.Set("Tun", Tun::Define(env));
  return exports;
}
