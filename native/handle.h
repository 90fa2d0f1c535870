// Handles: what the data path's native calls take instead of objects and typed arrays.
//
// A handle is a JavaScript External that points at a small native struct made once: a
// registered batch (the raw pointers of a buffer and its offsets and lengths arrays) or a
// DTLS connection. Why: node-addon-api asks V8 twice for each typed array's memory, and an
// ObjectWrap method looks its object up through a private property; on a record operation
// after the process slept (a ping every 50 ms), that glue was about a third of the time
// (bench/README.md, "A ping's critical path"). Reading an External is one pointer load.
#pragma once
#include <napi.h>

#include "args.h"

#include <cstddef>
#include <cstdint>
#include <string>

// Every handle struct starts with its kind's tag, so a handle of the wrong kind (or any
// other External) is refused with an error instead of being used.
struct HandleHead {
  uint32_t tag;
};

template <class T>
T* FromHandle(Napi::Env env, napi_value v, const char* what) {
  void* p = nullptr;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p || static_cast<HandleHead*>(p)->tag != T::kTag) {
    Napi::TypeError::New(env, std::string(what) + ": expected a " + T::kName + " handle").ThrowAsJavaScriptException();
    return nullptr;
  }
  return static_cast<T*>(p);
}

// A batch's arrays, converted once: packet i is buf[offs[i], offs[i] + lens[i]).
struct BatchRef {
  static constexpr uint32_t kTag = 0x62617463;  // "batc"
  static constexpr const char* kName = "batch";
  HandleHead head{kTag};
  uint8_t* buf = nullptr;
  size_t bufLen = 0;
  uint32_t* offs = nullptr;
  uint32_t* lens = nullptr;
  size_t cap = 0;                 // entries offs and lens both hold
  Napi::ObjectReference keep[3];  // the arrays' buffers: their memory stays (in place) as long as the handle
  // The arrays on ArrayBuffers, which JavaScript may detach or shrink (their memory then goes
  // away), are checked on every use: is each still as long as its array needs (`end` bytes)?
  // The data path's batches are on SharedArrayBuffers (src/batch.ts), which can neither be
  // detached nor shrink, and skip the check (about 110 instructions per array).
  size_t end[3] = {};
  bool detachable[3] = {};
  bool anyDetachable = false;

  bool Live(napi_env env) {
    if (!anyDetachable) return true;
    for (int i = 0; i < 3; i++) {
      size_t len = 0;
      if (detachable[i] && (napi_get_arraybuffer_info(env, keep[i].Value(), nullptr, &len) != napi_ok || len < end[i])) return false;
    }
    return true;
  }
};

// The batch behind a handle, or nullptr with a TypeError thrown: not a batch handle, or its
// memory was detached (or shrunk) since batchRef.
inline BatchRef* BatchFromHandle(Napi::Env env, napi_value v, const char* what) {
  BatchRef* b = FromHandle<BatchRef>(env, v, what);
  if (b && !b->Live(env)) {
    Napi::TypeError::New(env, std::string(what) + ": the batch's ArrayBuffer was detached or shrunk").ThrowAsJavaScriptException();
    return nullptr;
  }
  return b;
}

// A handle on one of our ObjectWrap objects (a TUN device, a UDP socket, a DTLS connection):
// the object, and a reference that keeps its JavaScript wrapper, which owns it, alive as long
// as the handle. T names its kind with kHandleTag and kHandleName.
template <class T>
struct ObjHandle {
  static constexpr uint32_t kTag = T::kHandleTag;
  static constexpr const char* kName = T::kHandleName;
  HandleHead head{kTag};
  T* obj;
  Napi::ObjectReference keep;
};

template <class T>
Napi::Value NewObjHandle(Napi::Env env, T* obj) {
  auto* h = new ObjHandle<T>{{T::kHandleTag}, obj, Napi::Persistent(obj->Value())};
  return Napi::External<ObjHandle<T>>::New(env, h, [](Napi::Env, ObjHandle<T>* p) { delete p; });
}

// The object behind a handle made by NewObjHandle<T>, or nullptr (with a TypeError thrown).
template <class T>
T* ObjFromHandle(Napi::Env env, napi_value v, const char* what) {
  ObjHandle<T>* h = FromHandle<ObjHandle<T>>(env, v, what);
  return h ? h->obj : nullptr;
}

// bindStatus(Float64Array of n): the memory of a status array JavaScript owns and native code
// keeps up to date after each call (a DTLS connection's state, a TUN's GRO counters), so the
// data path reads it without a native call. `keep` holds the array alive (its memory never
// moves). Returns nullptr, with a TypeError or RangeError thrown, if the argument is not such an array.
inline double* BindStatusArray(const Napi::CallbackInfo& info, const char* fn, size_t n, Napi::ObjectReference& keep) {
  Args a(info, fn);
  View<double> v;
  if (!a.Array(info[0], "status", &v, true)) return nullptr;
  if (v.len < n) {
    a.RangeFail("status: expected a Float64Array of at least " + std::to_string(n) + " entries, got " + std::to_string(v.len));
    return nullptr;
  }
  keep = Napi::Persistent(v.obj);
  return v.data;
}

// An ObjectWrap class whose accessors and methods cannot be called on another object.
// node-addon-api finds the C++ object behind `this` with napi_unwrap, which takes any wrapped
// object. V8 refuses a method called on an object of another class ("Illegal invocation"),
// but not an accessor: Object.getOwnPropertyDescriptor(Tun.prototype, 'fd').get.call(aUdp)
// would read a Udp as a Tun. So each object is tagged with its class's type tag (T::kTypeTag)
// when made, and this Unwrap, which node-addon-api calls as T::Unwrap, refuses an object
// without it (a TypeError). T names itself kClassName.
template <class T>
class Wrapped : public Napi::ObjectWrap<T> {
 public:
  explicit Wrapped(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) {
    napi_type_tag_object(info.Env(), info.This(), &T::kTypeTag);
  }
  static T* Unwrap(Napi::Object o) {
    bool ok = false;
    if (!o.IsObject() || napi_check_object_type_tag(o.Env(), o, &T::kTypeTag, &ok) != napi_ok || !ok) {
      Napi::TypeError::New(o.Env(), std::string("expected a ") + T::kClassName + " object as `this`").ThrowAsJavaScriptException();
      return nullptr;
    }
    return Napi::ObjectWrap<T>::Unwrap(o);
  }
};

void InitHandles(Napi::Env env, Napi::Object exports);
