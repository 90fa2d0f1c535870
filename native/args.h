// Checks of what JavaScript passes to the addon: every function and method takes its
// arguments through these before it uses them.
//
// Why: node-addon-api's conversions check nothing we can rely on. A Uint8Array taken for a
// Uint32Array is written past its end, -1 taken as an unsigned count becomes 4294967295 and
// NaN becomes 0, a detached ArrayBuffer has no memory, and a conversion that fails leaves an
// exception pending: throwing a second one then aborts the process. So each check either
// gives the value, or throws a TypeError (wrong type, detached memory) or a RangeError (a
// number or length out of range) whose message names the function and the argument, and
// returns false; the caller then returns at once. Ranges are what the memory and the system
// calls can take, nothing more (no policy here).
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

// A typed array's memory, taken once: `len` elements of T at `data`, which ends `end` bytes
// into `buffer` (which keeps it alive). `detachable`: an ArrayBuffer, which JavaScript may
// detach or shrink later (see Array).
template <class T>
struct View {
  Napi::Object obj, buffer;
  T* data = nullptr;
  size_t len = 0, end = 0;
  bool detachable = true;
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : env_(info.Env()), fn_(fn) {}

  // A number in [lo, hi] (not NaN), or with `integer` an integer in it. (Runs several times
  // per datagram: the check inline, the message out of line. A double of 2^53 or more is
  // whole; below, the cast to int64_t and back says whether it is, without a call to floor.)
  [[gnu::always_inline]] bool Number(Napi::Value v, const char* name, double lo, double hi, double* out, bool integer = false) {
    double d = 0;
    if (napi_get_value_double(env_, v, &d) != napi_ok) return TypeFail(name, "a number", v);
    if (!(d >= lo && d <= hi) || (integer && std::fabs(d) < 9007199254740992.0 && static_cast<double>(static_cast<int64_t>(d)) != d)) {
      return NumberFail(name, lo, hi, d, integer);
    }
    *out = d;
    return true;
  }
  template <class T>
  [[gnu::always_inline]] bool Int(Napi::Value v, const char* name, double lo, double hi, T* out) {
    double d = 0;
    if (!Number(v, name, lo, hi, &d, true)) return false;
    *out = static_cast<T>(d);
    return true;
  }
  // The same, or *out left as it is when the argument is missing (undefined).
  template <class T>
  bool OptInt(Napi::Value v, const char* name, double lo, double hi, T* out) {
    return v.IsUndefined() || Int(v, name, lo, hi, out);
  }
  bool OptNumber(Napi::Value v, const char* name, double lo, double hi, double* out) {
    return v.IsUndefined() || Number(v, name, lo, hi, out);
  }
  bool OptBool(Napi::Value v, const char* name, bool* out) {
    if (v.IsUndefined()) return true;
    if (!v.IsBoolean()) return TypeFail(name, "a boolean", v);
    *out = v.As<Napi::Boolean>().Value();
    return true;
  }

  // A string. With `cstr` it goes on to C as a NUL-terminated string, so a NUL byte in it
  // (which would cut it short: "eth0\0x" opening eth0) is refused.
  bool String(Napi::Value v, const char* name, std::string* out, bool cstr = true) {
    if (!v.IsString()) return TypeFail(name, "a string", v);
    *out = v.As<Napi::String>().Utf8Value();
    if (cstr && out->find('\0') != std::string::npos) return TypeFail(std::string(name) + ": contains a NUL byte");
    return true;
  }
  bool Function(Napi::Value v, const char* name, Napi::Function* out) {
    if (!v.IsFunction()) return TypeFail(name, "a function", v);
    *out = v.As<Napi::Function>();
    return true;
  }

  // A typed array of T (uint8_t: a Buffer or other Uint8Array, uint32_t: a Uint32Array,
  // double: a Float64Array) whose ArrayBuffer is not detached.
  //
  // `kept`: native code keeps the pointer for as long as it likes (a reader's batch, a status
  // array). An ArrayBuffer can be detached at any time (structuredClone with transfer,
  // ArrayBuffer.prototype.transfer in Node 22+) or, if resizable, shrunk, which frees or moves
  // its memory under us; a SharedArrayBuffer cannot: kept memory must be on one. (A batch
  // handle takes either: it checks an ArrayBuffer again on each use, see BatchRef.)
  template <class T>
  bool Array(Napi::Value v, const char* name, View<T>* out, bool kept = false) {
    napi_typedarray_type type;
    size_t len = 0;
    void* data = nullptr;
    napi_value ab;
    size_t offset = 0;
    if (!v.IsTypedArray() || napi_get_typedarray_info(env_, v, &type, &len, &data, &ab, &offset) != napi_ok ||
        type != Kind<T>()) {
      return TypeFail(name, Article(KindName(Kind<T>())), v);
    }
    bool detached = false, plain = true;
    if (napi_is_detached_arraybuffer(env_, ab, &detached) != napi_ok || detached) {
      return TypeFail(std::string(name) + ": its ArrayBuffer is detached");
    }
    if (napi_is_arraybuffer(env_, ab, &plain) != napi_ok) plain = true;
    if (kept && plain) {
      return TypeFail(std::string(name) + ": native code keeps this memory, so it must be on a SharedArrayBuffer, " +
                      "which cannot be detached (e.g. Buffer.from(new SharedArrayBuffer(n)))");
    }
    out->obj = v.As<Napi::Object>();
    out->buffer = Napi::Object(env_, ab);
    out->detachable = plain;
    out->data = static_cast<T*>(data);
    out->len = len;
    out->end = offset + len * sizeof(T);
    return true;
  }

  // Throw a TypeError or RangeError "fn: what"; return false.
  bool TypeFail(const std::string& what) {
    Napi::TypeError::New(env_, std::string(fn_) + ": " + what).ThrowAsJavaScriptException();
    return false;
  }
  [[gnu::noinline]] bool TypeFail(const char* name, const std::string& want, Napi::Value got) {
    return TypeFail(std::string(name) + ": expected " + want + ", got " + Describe(got));
  }
  [[gnu::noinline]] bool NumberFail(const char* name, double lo, double hi, double d, bool integer) {
    return RangeFail(std::string(name) + ": expected " + (integer ? "an integer" : "a number") + " from " + Text(lo) +
                     " to " + Text(hi) + ", got " + Text(d));
  }
  bool RangeFail(const std::string& what) {
    Napi::RangeError::New(env_, std::string(fn_) + ": " + what).ThrowAsJavaScriptException();
    return false;
  }

  // What a value is, for a message: "undefined", "a string", "a Uint8Array"...
  static std::string Describe(Napi::Value v) {
    switch (v.Type()) {
      case napi_undefined: return "undefined";
      case napi_null: return "null";
      case napi_boolean: return "a boolean";
      case napi_number: return "the number " + Text(v.As<Napi::Number>().DoubleValue());
      case napi_string: return "a string";
      case napi_symbol: return "a symbol";
      case napi_function: return "a function";
      case napi_external: return "a handle";
      case napi_bigint: return "a bigint";
      default: break;
    }
    if (v.IsTypedArray()) return Article(KindName(v.As<Napi::TypedArray>().TypedArrayType()));
    if (v.IsArrayBuffer()) return "an ArrayBuffer";
    if (v.IsDataView()) return "a DataView";
    if (v.IsArray()) return "an array";
    return "an object";
  }

  static std::string Text(double d) {
    if (std::isnan(d)) return "NaN";
    char b[32];
    snprintf(b, sizeof b, std::floor(d) == d && std::fabs(d) < 1e15 ? "%.0f" : "%g", d);
    return b;
  }

 private:
  // "a Uint32Array", "an Int32Array"
  static std::string Article(const char* noun) { return std::string(strchr("AEIO", noun[0]) ? "an " : "a ") + noun; }
  template <class T>
  static constexpr napi_typedarray_type Kind() {
    return std::is_same<T, uint8_t>::value ? napi_uint8_array : std::is_same<T, uint32_t>::value ? napi_uint32_array : napi_float64_array;
  }
  static const char* KindName(napi_typedarray_type t) {
    switch (t) {
      case napi_int8_array: return "Int8Array";
      case napi_uint8_array: return "Buffer (Uint8Array)";
      case napi_uint8_clamped_array: return "Uint8ClampedArray";
      case napi_int16_array: return "Int16Array";
      case napi_uint16_array: return "Uint16Array";
      case napi_int32_array: return "Int32Array";
      case napi_uint32_array: return "Uint32Array";
      case napi_float32_array: return "Float32Array";
      case napi_float64_array: return "Float64Array";
      case napi_bigint64_array: return "BigInt64Array";
      case napi_biguint64_array: return "BigUint64Array";
      default: return "typed array";
    }
  }

  Napi::Env env_;
  const char* fn_;  // (not a std::string: made on every data-path call)
};
