// Module entry: registers the two halves of the addon.
// tun.cc  - what Node cannot do for a TUN device (TUNSETIFF ioctl, uv_poll reads in batches)
// udp.cc  - the UDP socket read and written in batches (recvmmsg/sendmmsg)
// handle.cc - handles: a batch's arrays converted once, named by one value per call
// dtls.cc - OpenSSL's DTLS 1.2, taken from the OpenSSL that the node binary itself exports
#include <napi.h>
#include <uv.h>

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

// setHandoffYield(maxBatch): after a reader's callback that passed packets on (udpSend,
// tunWrite) and had at most maxBatch packets, yield the CPU once (poll.h); 0 turns it off.
// For this thread's event loop. handoffYields() -> how often that happened.
static Napi::Value SetHandoffYield(const Napi::CallbackInfo& info) {
  t_handoff.maxBatch = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  return info.Env().Undefined();
}
static Napi::Value HandoffYields(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), t_handoff.yields);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("loopNow", Napi::Function::New<LoopNow>(env, "loopNow"));
  exports.Set("setHandoffYield", Napi::Function::New<SetHandoffYield>(env, "setHandoffYield"));
  exports.Set("handoffYields", Napi::Function::New<HandoffYields>(env, "handoffYields"));
  InitTun(env, exports);
  InitDtls(env, exports);
  InitUdp(env, exports);
  InitHandles(env, exports);
  return exports;
}

NODE_API_MODULE(minivpn, Init)
