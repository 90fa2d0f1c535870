// Module entry: registers the two halves of the addon.
// tun.cc  - what Node cannot do for a TUN device (TUNSETIFF ioctl, uv_poll reads in batches)
// udp.cc  - the UDP socket read and written in batches (recvmmsg/sendmmsg)
// handle.cc - handles: a batch's arrays converted once, named by one value per call
// dtls.cc - OpenSSL's DTLS 1.2, taken from the OpenSSL that the node binary itself exports
#include <napi.h>
#include <uv.h>

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

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("loopNow", Napi::Function::New<LoopNow>(env, "loopNow"));
  InitTun(env, exports);
  InitDtls(env, exports);
  InitUdp(env, exports);
  InitHandles(env, exports);
  return exports;
}

NODE_API_MODULE(minivpn, Init)
