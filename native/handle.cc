// batchRef(buf, offs, lens) -> a batch handle (see handle.h).
#include "handle.h"

#include <algorithm>

namespace {

Napi::Value MakeBatchRef(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsBuffer() || !info[1].IsTypedArray() || !info[2].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, "batchRef(buf: Buffer, offs: Uint32Array, lens: Uint32Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  auto offs = info[1].As<Napi::Uint32Array>();
  auto lens = info[2].As<Napi::Uint32Array>();
  auto* b = new BatchRef();
  b->buf = buf.Data();
  b->bufLen = buf.Length();
  b->offs = offs.Data();
  b->lens = lens.Data();
  b->cap = std::min(offs.ElementLength(), lens.ElementLength());
  // An ArrayBuffer's memory never moves: the pointers stay valid while these keep it alive.
  b->keep[0] = Napi::Persistent(buf.As<Napi::Object>());
  b->keep[1] = Napi::Persistent(offs.As<Napi::Object>());
  b->keep[2] = Napi::Persistent(lens.As<Napi::Object>());
  return Napi::External<BatchRef>::New(env, b, [](Napi::Env, BatchRef* p) { delete p; });
}

}  // namespace

void InitHandles(Napi::Env env, Napi::Object exports) {
  exports.Set("batchRef", Napi::Function::New<MakeBatchRef>(env, "batchRef"));
}
