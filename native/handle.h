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
  Napi::ObjectReference keep[3];  // the arrays stay alive (and in place) as long as the handle
};

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
// moves). Returns nullptr, with a TypeError thrown, if the argument is not such an array.
inline double* BindStatusArray(const Napi::CallbackInfo& info, size_t n, Napi::ObjectReference& keep) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[0].As<Napi::Float64Array>().ElementLength() < n) {
    Napi::TypeError::New(env, "bindStatus(Float64Array of " + std::to_string(n) + ")").ThrowAsJavaScriptException();
    return nullptr;
  }
  auto a = info[0].As<Napi::Float64Array>();
  keep = Napi::Persistent(a.As<Napi::Object>());
  return a.Data();
}

void InitHandles(Napi::Env env, Napi::Object exports);
