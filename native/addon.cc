// Module entry: registers the two halves of the addon.
// tun.cc  - what Node cannot do for a TUN device (TUNSETIFF ioctl, uv_poll reads in batches)
// udp.cc  - the UDP socket read and written in batches (recvmmsg/sendmmsg)
// handle.cc - handles: a batch's arrays converted once, named by one value per call
// dtls.cc - OpenSSL's DTLS 1.2, taken from the OpenSSL that the node binary itself exports
#include <napi.h>

Napi::Object InitTun(Napi::Env env, Napi::Object exports);
Napi::Object InitDtls(Napi::Env env, Napi::Object exports);
Napi::Object InitUdp(Napi::Env env, Napi::Object exports);
void InitHandles(Napi::Env env, Napi::Object exports);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitTun(env, exports);
  InitDtls(env, exports);
  InitUdp(env, exports);
  InitHandles(env, exports);
  return exports;
}

NODE_API_MODULE(minivpn, Init)
