// Module entry: registers the two halves of the addon.
// tun.cc  - what Node cannot do for a TUN device (TUNSETIFF ioctl, uv_poll reads in batches)
// udp.cc  - the UDP socket read and written in batches (recvmmsg/sendmmsg)
// handle.cc - handles: a batch's arrays converted once, named by one value per call
// dtls.cc - OpenSSL's DTLS 1.2, taken from the OpenSSL that the node binary itself exports
#include <napi.h>
#include <uv.h>

#include "args.h"
#include "poll.h"

Napi::Object InitTun(Napi::Env env, Napi::Object exports);
Napi::Object InitDtls(Napi::Env env, Napi::Object exports);
Napi::Object InitUdp(Napi::Env env, Napi::Object exports);
void InitHandles(Napi::Env env, Napi::Object exports);

// loopNow() -> the event loop's monotonic clock in ms (uv_now), what the VPN's timeouts run on.
static Napi::Value LoopNow(const Napi::CallbackInfo& info) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(info.Env(), &loop);
  return Napi::Number::New(info.Env(), loop ? static_cast<double>(uv_now(loop)) : 0);
}

// setHandoffYield(maxBatch, maxAwayMs, pauseMs): in a reader's callback that had at most
// maxBatch packets, each udpSend or tunWrite that passes packets on yields the CPU; 0: never.
// A yield that kept us away longer than maxAwayMs pauses yielding (poll.h). For this thread's
// event loop. handoffStats() -> [yields, of them slow, ms until yielding resumes (0: not paused)].
static Napi::Value SetHandoffYield(const Napi::CallbackInfo& info) {
  Args a(info, "setHandoffYield");
  double maxBatch = 0, maxAwayMs = t_handoff.maxAwayMs, pauseMs = t_handoff.pauseMs;
  if (!a.Number(info[0], "maxBatch", 0, 1e9, &maxBatch) || !a.OptNumber(info[1], "maxAwayMs", 0, 1e9, &maxAwayMs) ||
      !a.OptNumber(info[2], "pauseMs", 0, 1e9, &pauseMs)) {
    return info.Env().Undefined();
  }
  t_handoff.maxBatch = maxBatch;
  t_handoff.maxAwayMs = maxAwayMs;
  t_handoff.pauseMs = pauseMs;
  t_handoff.pausedUntil = 0;
  return info.Env().Undefined();
}
static Napi::Value HandoffStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env, 3);
  double left = t_handoff.pausedUntil - MonotonicMs();
  a.Set(0u, Napi::Number::New(env, t_handoff.yields));
  a.Set(1u, Napi::Number::New(env, t_handoff.slow));
  a.Set(2u, Napi::Number::New(env, left > 0 ? left : 0));
  return a;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("loopNow", Napi::Function::New<LoopNow>(env, "loopNow"));
  exports.Set("setHandoffYield", Napi::Function::New<SetHandoffYield>(env, "setHandoffYield"));
  exports.Set("handoffStats", Napi::Function::New<HandoffStats>(env, "handoffStats"));
  InitTun(env, exports);
  InitDtls(env, exports);
  InitUdp(env, exports);
  InitHandles(env, exports);
  return exports;
}

NODE_API_MODULE(minivpn, Init)
