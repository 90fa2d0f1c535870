// batchRef(buf, offs, lens) -> a batch handle (see handle.h).
#include "handle.h"

#include <algorithm>

namespace {

Napi::Value MakeBatchRef(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "batchRef");
  View<uint8_t> buf;
  View<uint32_t> offs, lens;
  if (!a.Array(info[0], "buf", &buf) || !a.Array(info[1], "offs", &offs) || !a.Array(info[2], "lens", &lens)) return env.Undefined();
  auto* b = new BatchRef();
  b->buf = buf.data;
  b->bufLen = buf.len;
  b->offs = offs.data;
  b->lens = lens.data;
  b->cap = std::min(offs.len, lens.len);
  // An ArrayBuffer's memory never moves: the pointers stay valid while these keep it alive
  // (and, for an ArrayBuffer, while it is not detached: BatchRef::Live).
  const Napi::Object* buffers[3] = {&buf.buffer, &offs.buffer, &lens.buffer};
  const size_t ends[3] = {buf.end, offs.end, lens.end};
  const bool detachable[3] = {buf.detachable, offs.detachable, lens.detachable};
  for (int i = 0; i < 3; i++) {
    b->keep[i] = Napi::Persistent(*buffers[i]);
    b->end[i] = ends[i];
    b->detachable[i] = detachable[i];
    b->anyDetachable |= detachable[i];
  }
  return Napi::External<BatchRef>::New(env, b, [](Napi::Env, BatchRef* p) { delete p; });
}

}  // namespace

void InitHandles(Napi::Env env, Napi::Object exports) {
  exports.Set("batchRef", Napi::Function::New<MakeBatchRef>(env, "batchRef"));
}
