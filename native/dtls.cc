// DTLS 1.2 through the OpenSSL that the node binary itself exports.
//
// JavaScript owns the one UDP socket. A connection object takes datagrams in and gives
// datagrams and decrypted records out; OpenSSL does everything else: the handshake, the
// stateless cookie exchange (DTLSv1_listen), retransmission timers, the replay window,
// alerts and close_notify. This file only moves bytes between JS buffers and OpenSSL.
//
// Why a small BIO of our own instead of BIO_s_mem: a memory BIO is a byte stream, so a
// handshake flight written as several records would come out as one blob larger than the
// path MTU. Our BIO keeps datagram boundaries: one BIO_write is one datagram, one BIO_read
// hands over one whole datagram, as a UDP socket would (OpenSSL 3.2 has BIO_s_dgram_mem;
// Node 20 and 22 ship OpenSSL 3.0).
#include <napi.h>

#include "handle.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------
// The datagram BIO

struct Sink {  // where sealed records go: straight into a JS buffer, for the data path
  uint8_t* buf = nullptr;
  size_t cap = 0, used = 0;
  uint32_t* offs = nullptr;
  uint32_t* lens = nullptr;
  size_t max = 0, count = 0;
};

struct DgramState {
  const uint8_t* in = nullptr;  // the datagram being fed, consumed by one read
  size_t inLen = 0;
  Sink* sink = nullptr;         // when set, writes land here; otherwise in `queue`
  std::vector<std::string> queue;
};

BIO_METHOD* g_method = nullptr;

int DgramWrite(BIO* b, const char* data, int len) {
  auto* st = static_cast<DgramState*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  Sink* s = st->sink;
  if (s && s->count < s->max && s->used + len <= s->cap) {
    memcpy(s->buf + s->used, data, len);
    s->offs[s->count] = static_cast<uint32_t>(s->used);
    s->lens[s->count] = static_cast<uint32_t>(len);
    s->count++;
    s->used += (static_cast<size_t>(len) + 7) & ~static_cast<size_t>(7);
  } else {
    st->queue.emplace_back(data, len);
  }
  return len;
}

int DgramRead(BIO* b, char* out, int len) {
  auto* st = static_cast<DgramState*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (!st->in) {
    BIO_set_retry_read(b);
    return -1;
  }
  // A datagram is read whole or truncated, never split across reads.
  int n = static_cast<int>(st->inLen) < len ? static_cast<int>(st->inLen) : len;
  memcpy(out, st->in, n);
  st->in = nullptr;
  st->inLen = 0;
  return n;
}

long DgramCtrl(BIO* b, int cmd, long num, void* ptr) {
  auto* st = static_cast<DgramState*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING: return st && st->in ? static_cast<long>(st->inLen) : 0;
    case BIO_CTRL_WPENDING: return 0;
    case BIO_CTRL_DGRAM_QUERY_MTU: return 0;              // we set the MTU explicitly
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU: return 1200;
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD: return 28;      // IPv4 + UDP
    case BIO_CTRL_DGRAM_MTU_EXCEEDED: return 0;
    case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT: return 1;
    case BIO_CTRL_DGRAM_GET_PEER: return 0;               // JS knows the peer, not us
    case BIO_CTRL_DGRAM_SET_PEER: return 1;
    case BIO_CTRL_DGRAM_SET_CONNECTED: return 1;
    case BIO_CTRL_PUSH:
    case BIO_CTRL_POP: return 0;
    default: return 0;
  }
}

int DgramCreate(BIO* b) {
  BIO_set_data(b, new DgramState());
  BIO_set_init(b, 1);
  return 1;
}

int DgramDestroy(BIO* b) {
  delete static_cast<DgramState*>(BIO_get_data(b));
  BIO_set_data(b, nullptr);
  return 1;
}

// The queued datagrams as a JS array of Buffers (null when there are none); empties the queue.
Napi::Value TakeQueue(Napi::Env env, DgramState* ds) {
  if (ds->queue.empty()) return env.Null();
  Napi::Array out = Napi::Array::New(env, ds->queue.size());
  for (size_t i = 0; i < ds->queue.size(); i++)
    out.Set(i, Napi::Buffer<char>::Copy(env, ds->queue[i].data(), ds->queue[i].size()));
  ds->queue.clear();
  return out;
}

BIO* NewDgramBio() {
  if (!g_method) {
    g_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "minivpn datagram");
    BIO_meth_set_write(g_method, DgramWrite);
    BIO_meth_set_read(g_method, DgramRead);
    BIO_meth_set_ctrl(g_method, DgramCtrl);
    BIO_meth_set_create(g_method, DgramCreate);
    BIO_meth_set_destroy(g_method, DgramDestroy);
  }
  return BIO_new(g_method);
}

// ---------------------------------------------------------------------------------------
// Per-SSL state reachable from OpenSSL callbacks (SSL app data)

struct SslState {
  std::string peerKey;   // the peer's address and port (as listen() got them), the input to the cookie HMAC
  std::string alertIn;   // last alert the peer sent us
  std::string alertOut;  // last alert we sent
};

DgramState* StateOf(SSL* ssl) { return static_cast<DgramState*>(BIO_get_data(SSL_get_rbio(ssl))); }

// Drains OpenSSL's error queue into one readable line.
std::string TakeErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    const char* r = ERR_reason_error_string(e);
    std::string s = r ? r : ("error " + std::to_string(e));
    if (out.find(s) == std::string::npos) {
      if (!out.empty()) out += "; ";
      out += s;
    }
  }
  return out;
}

void InfoCallback(const SSL* ssl, int where, int ret) {
  if (!(where & SSL_CB_ALERT)) return;
  auto* st = static_cast<SslState*>(SSL_get_app_data(ssl));
  if (!st) return;
  std::string desc = SSL_alert_desc_string_long(ret);
  if (where & SSL_CB_READ) st->alertIn = desc;
  else st->alertOut = desc;
}

// ---------------------------------------------------------------------------------------
// Context: certificates, verification policy, cookie secret, key log

class Context;

class Connection : public Wrapped<Connection> {
 public:
  static constexpr uint32_t kHandleTag = 0x64746c73;  // "dtls"
  static constexpr const char* kHandleName = "DTLS connection";
  static constexpr const char* kClassName = "DtlsConnection";
  static constexpr napi_type_tag kTypeTag = {0x6b7c2f370f78a2ed, 0xb47a8c07707b5fe5};
  static Napi::Object Make(Napi::Env env) { return env.GetInstanceData<Napi::FunctionReference>()->New({}); }
  static Napi::Function Define(Napi::Env env);
  explicit Connection(const Napi::CallbackInfo& info);
  ~Connection() override { Free(); }
  void Adopt(SSL* ssl, Napi::Object ctxObj, bool server);

 private:
  Napi::Value Handshake(const Napi::CallbackInfo& info);
  Napi::Value Handle(const Napi::CallbackInfo& info);
 public:
  // The data path's calls: plain functions on handles (see handle.h), no unwrap, no arrays.
  static Napi::Value OpenHandles(const Napi::CallbackInfo& info);
  static Napi::Value SealHandles(const Napi::CallbackInfo& info);
 private:
  // The work of dtlsOpen/dtlsSeal, on raw memory.
  size_t OpenInto(const uint8_t* in, size_t inLen, const uint32_t* inOffs, const uint32_t* inLens, uint32_t inCount,
                  uint8_t* out, size_t outLen, uint32_t* outOffs, uint32_t* outLens, size_t outMax, size_t count, size_t used);
  size_t SealInto(const uint8_t* in, size_t inLen, const uint32_t* inOffs, const uint32_t* inLens, uint32_t inCount,
                  uint8_t* out, size_t outLen, uint32_t* outOffs, uint32_t* outLens, size_t outMax);
  Napi::Value TakeOutput(const Napi::CallbackInfo& info);
  Napi::Value Timeout(const Napi::CallbackInfo& info);
  Napi::Value HandleTimeout(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);
  Napi::Value Peer(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value SetMtu(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value BindStatus(const Napi::CallbackInfo& info);
  Napi::Value ErrorGetter(const Napi::CallbackInfo& info) {
    return error_.empty() ? info.Env().Null() : Napi::String::New(info.Env(), error_).As<Napi::Value>();
  }

  int Step();  // drive the handshake; returns state_
  // Copies state_, dropped_ and the output queue's length into the JS-owned status array,
  // so JavaScript reads them per datagram without a native call (each one costs an N-API
  // crossing and an unwrap; the server asked three times per datagram). Called at the end of
  // every method that may change them.
  void Publish() {
    if (!status_) return;
    status_[0] = state_;
    status_[1] = dropped_;
    status_[2] = ssl_ ? static_cast<double>(StateOf(ssl_)->queue.size()) : 0;
  }
  void Fail(const std::string& why);
  void Free() {
    if (ssl_) {
      delete static_cast<SslState*>(SSL_get_app_data(ssl_));
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    ctxRef_.Reset();
  }

  enum { HANDSHAKING = 0, OPEN = 1, CLOSED = 2, FAILED = 3 };
  SSL* ssl_ = nullptr;
  bool server_ = false;
  int state_ = HANDSHAKING;
  double dropped_ = 0;  // datagrams OpenSSL discarded: replayed, forged, or garbage
  std::string error_;
  Napi::ObjectReference ctxRef_;  // the context must outlive its connections
  double* status_ = nullptr;      // [state, dropped, queued output datagrams], see Publish
  Napi::ObjectReference statusRef_;
};


class Context : public Wrapped<Context> {
 public:
  static constexpr const char* kClassName = "DtlsContext";
  static constexpr napi_type_tag kTypeTag = {0x242eac9d2f86c238, 0xc7be58b12bfe19b3};
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DtlsContext", {
      InstanceMethod<&Context::Listen>("listen"),
      InstanceMethod<&Context::RotateCookieSecret>("rotateCookieSecret"),
      InstanceMethod<&Context::CheckCookie>("checkCookie"),
      InstanceMethod<&Context::Connect>("connect"),
      InstanceMethod<&Context::TakeKeylog>("takeKeylog"),
    });
  }

  // new DtlsContext({ server, ca, cert, key, verifyPeer = true, ciphers?, cookieSecret?, mtu?, keylog?, retransmitMs? })
  explicit Context(const Napi::CallbackInfo& info) : Wrapped<Context>(info) {
    Napi::Env env = info.Env();
    Options o;
    if (!ReadOptions(info, &o)) return;
    server_ = o.server;
    keylog_ = o.keylog;
    mtu_ = o.mtu;
    retransmitUs_ = o.retransmitMs * 1000u;

    ctx_ = SSL_CTX_new(server_ ? DTLS_server_method() : DTLS_client_method());
    if (!ctx_) { Throw(env, "cannot create DTLS context: " + TakeErrors()); return; }
    SSL_CTX_set_app_data(ctx_, this);
    SSL_CTX_set_min_proto_version(ctx_, DTLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx_, DTLS1_2_VERSION);
    // No renegotiation (a classic DoS and confusion source); we set the MTU ourselves.
    SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_QUERY_MTU | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // A VPN session is one long handshake-then-data stream: no session cache to grow.
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_cipher_list(ctx_, o.ciphers.c_str()) != 1) { Throw(env, "ciphers: " + TakeErrors()); return; }
    SSL_CTX_set1_groups_list(ctx_, "X25519:P-256:P-384");

    if (!LoadCa(env, o.ca)) return;
    // A client may go without a certificate (then a mutual-auth server refuses it, which the
    // tests show); a server always needs one.
    if ((o.hasCert || server_) && !LoadCertAndKey(env, o.cert, o.key)) return;

    if (o.verify) {
      int mode = SSL_VERIFY_PEER | (server_ ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
      SSL_CTX_set_verify(ctx_, mode, nullptr);
      SSL_CTX_set_verify_depth(ctx_, 4);
    }
    if (server_) {
      secret_ = o.cookieSecret;
      if (!o.hasSecret) {
        secret_.resize(32);
        RAND_bytes(secret_.data(), 32);
      }
      mac_ = NewMac(secret_);
      if (!mac_) { Throw(env, "cookie HMAC: " + TakeErrors()); return; }
      SSL_CTX_set_cookie_generate_cb(ctx_, GenCookie);
      SSL_CTX_set_cookie_verify_cb(ctx_, VerifyCookie);
      // No session resumption: every client proves itself with its certificate each time, so
      // an authorization removed (SIGHUP) or a certificate expired cannot be bypassed by a
      // ticket or a cached session.
      SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
      SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    }
    // What a peer can make us buffer for one handshake message (its certificate chain above
    // all): ours are well under 4 KB; OpenSSL's default is 100 KB per message.
    SSL_CTX_set_max_cert_list(ctx_, kMaxCertList);
    if (keylog_) SSL_CTX_set_keylog_callback(ctx_, KeylogCallback);
  }

  // The options, each checked before anything is made.
  struct Options {
    bool server = false, verify = true, keylog = false;
    int mtu = 1400;  // datagram payload size for handshake fragmentation
    uint32_t retransmitMs = 0;  // 0: OpenSSL's default timer
    // ECDHE only (forward secrecy), AEAD only.
    std::string ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
    std::string ca, cert, key;
    bool hasCert = false;  // cert or key given (both empty or missing: none)
    bool hasSecret = false;
    std::vector<unsigned char> cookieSecret;
  };
  static bool ReadOptions(const Napi::CallbackInfo& info, Options* o) {
    Napi::Env env = info.Env();
    Args a(info, "new DtlsContext");
    if (!info[0].IsObject()) return a.TypeFail("options", "an object", info[0]);
    Napi::Object obj = info[0].As<Napi::Object>();
    static const char* const kNames[] = {"server", "verifyPeer", "keylog", "mtu", "retransmitMs", "ciphers", "ca", "cert", "key", "cookieSecret"};
    Napi::Value v[10];
    for (size_t i = 0; i < 10; i++) {
      v[i] = obj.Get(kNames[i]);
      if (env.IsExceptionPending()) return false;  // a getter threw
    }
    if (!a.OptBool(v[0], "server", &o->server) || !a.OptBool(v[1], "verifyPeer", &o->verify) ||
        !a.OptBool(v[2], "keylog", &o->keylog) || !a.OptInt(v[3], "mtu", 1, 65535, &o->mtu) ||
        !a.OptInt(v[4], "retransmitMs", 0, 60000, &o->retransmitMs) ||
        (!v[5].IsUndefined() && !a.String(v[5], "ciphers", &o->ciphers))) {
      return false;
    }
    if (!PemText(a, v[6], "ca", &o->ca)) return false;
    o->hasCert = v[7].ToBoolean() || v[8].ToBoolean();
    if (o->hasCert && (!PemText(a, v[7], "cert", &o->cert) || !PemText(a, v[8], "key", &o->key))) return false;
    if (!v[9].IsUndefined()) {
      View<uint8_t> secret;
      if (!a.Array(v[9], "cookieSecret", &secret)) return false;
      o->cookieSecret.assign(secret.data, secret.data + secret.len);
      o->hasSecret = true;
    }
    return true;
  }
  // PEM text: a string, or a Buffer of it.
  static bool PemText(Args& a, Napi::Value v, const char* name, std::string* out) {
    if (v.IsString()) return a.String(v, name, out, false);
    if (!v.IsTypedArray()) return a.TypeFail(name, "PEM text (a string or Buffer)", v);
    View<uint8_t> b;
    if (!a.Array(v, name, &b)) return false;
    out->assign(reinterpret_cast<const char*>(b.data), b.len);
    return true;
  }

  ~Context() override {
    if (listener_) { delete static_cast<SslState*>(SSL_get_app_data(listener_)); SSL_free(listener_); }
    if (ctx_) SSL_CTX_free(ctx_);
    EVP_MAC_CTX_free(mac_);
    EVP_MAC_CTX_free(previousMac_);
  }

  SSL_CTX* ctx() { return ctx_; }
  int mtu() const { return mtu_; }

  SSL* NewSsl() {
    SSL* ssl = SSL_new(ctx_);
    BIO* rb = NewDgramBio();
    // One BIO for both directions: its state holds the input datagram and the output sink.
    // (With rbio == wbio, SSL_set_bio takes the one reference we have.)
    SSL_set_bio(ssl, rb, rb);
    SSL_set_app_data(ssl, new SslState());
    SSL_set_info_callback(ssl, InfoCallback);
    SSL_set_mtu(ssl, mtu_);
    if (retransmitUs_) DTLS_set_timer_cb(ssl, TimerCallback);
    return ssl;
  }

 private:
  static void Throw(Napi::Env env, const std::string& msg) { Napi::Error::New(env, msg).ThrowAsJavaScriptException(); }

  bool LoadCa(Napi::Env env, const std::string& pem) {
    BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx_);
    int n = 0;
    while (X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, x);
      X509_free(x);
      n++;
    }
    BIO_free(b);
    ERR_clear_error();  // the loop ends on a "no start line" error
    if (n == 0) { Throw(env, "ca: no PEM certificate found"); return false; }
    return true;
  }

  bool LoadCertAndKey(Napi::Env env, const std::string& cpem, const std::string& kpem) {
    BIO* b = BIO_new_mem_buf(cpem.data(), static_cast<int>(cpem.size()));
    X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    if (!x) { BIO_free(b); ERR_clear_error(); Throw(env, "cert: no PEM certificate found"); return false; }
    bool ok = SSL_CTX_use_certificate(ctx_, x) == 1;
    X509_free(x);
    // Any further certificates in the file are the chain up to the CA.
    while (ok) {
      X509* extra = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
      if (!extra) break;
      SSL_CTX_add0_chain_cert(ctx_, extra);
    }
    BIO_free(b);
    ERR_clear_error();
    if (!ok) { Throw(env, "cert: " + TakeErrors()); return false; }
    b = BIO_new_mem_buf(kpem.data(), static_cast<int>(kpem.size()));
    EVP_PKEY* k = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    if (!k) { ERR_clear_error(); Throw(env, "key: no PEM private key found (or it is encrypted)"); return false; }
    ok = SSL_CTX_use_PrivateKey(ctx_, k) == 1;
    EVP_PKEY_free(k);
    if (!ok || SSL_CTX_check_private_key(ctx_) != 1) {
      ERR_clear_error();
      Throw(env, "key: does not match the certificate");
      return false;
    }
    return true;
  }

  // Stateless cookies: HMAC-SHA256(secret, peer key), the key being the peer's address and
  // port as the caller gives them. A spoofed source never sees the cookie, so it never gets
  // past DTLSv1_listen, and nothing is allocated for it. The secret rotates
  // (rotateCookieSecret, called by the JS side every few minutes); a cookie made with the
  // previous one is still accepted, so a handshake under way survives it.
  //
  // One keyed HMAC context per secret, made once: each cookie then costs an HMAC, not a
  // lookup of the algorithm and a key schedule too (EVP_Q_mac does both on every call, which
  // under a flood of ClientHellos was most of the cost of a cookie).
  static EVP_MAC_CTX* NewMac(const std::vector<unsigned char>& key) {
    if (key.empty()) return nullptr;
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (!mac) return nullptr;
    EVP_MAC_CTX* c = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // (the context holds its own reference)
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
    if (!c || EVP_MAC_init(c, key.data(), key.size(), params) != 1) { EVP_MAC_CTX_free(c); return nullptr; }
    return c;
  }
  static constexpr size_t kCookieLen = 32;
  // The cookie of `key` under one secret's context (init without a key: the same key again).
  static bool Mac(EVP_MAC_CTX* c, const unsigned char* key, size_t keyLen, unsigned char* out) {
    size_t n = 0;
    return c && EVP_MAC_init(c, nullptr, 0, nullptr) == 1 && EVP_MAC_update(c, key, keyLen) == 1 &&
           EVP_MAC_final(c, out, &n, kCookieLen) == 1 && n == kCookieLen;
  }
  // Whether `cookie` is the cookie of `key` under the current or the previous secret.
  bool CookieGood(const unsigned char* key, size_t keyLen, const unsigned char* cookie, size_t len) {
    if (len != kCookieLen) return false;
    for (EVP_MAC_CTX* c : {mac_, previousMac_}) {
      unsigned char want[kCookieLen];
      if (Mac(c, key, keyLen, want) && CRYPTO_memcmp(want, cookie, kCookieLen) == 0) return true;
    }
    return false;
  }
  static Context* Of(SSL* ssl) { return static_cast<Context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl))); }
  static const std::string* KeyOf(SSL* ssl) {
    auto* st = static_cast<SslState*>(SSL_get_app_data(ssl));
    return st ? &st->peerKey : nullptr;
  }
  static int GenCookie(SSL* ssl, unsigned char* cookie, unsigned int* len) {
    Context* self = Of(ssl);
    const std::string* key = KeyOf(ssl);
    if (!self || !key || !Mac(self->mac_, reinterpret_cast<const unsigned char*>(key->data()), key->size(), cookie)) return 0;
    *len = kCookieLen;
    return 1;
  }
  static int VerifyCookie(SSL* ssl, const unsigned char* cookie, unsigned int len) {
    Context* self = Of(ssl);
    const std::string* key = KeyOf(ssl);
    return self && key && self->CookieGood(reinterpret_cast<const unsigned char*>(key->data()), key->size(), cookie, len);
  }

  // rotateCookieSecret(): a new random cookie secret; the current one becomes the previous.
  Napi::Value RotateCookieSecret(const Napi::CallbackInfo& info) {
    if (!server_) return info.Env().Undefined();  // (a client makes no cookies)
    previous_ = secret_;
    secret_.assign(32, 0);
    RAND_bytes(secret_.data(), 32);
    EVP_MAC_CTX* next = NewMac(secret_);
    if (!next) { Throw(info.Env(), "cookie HMAC: " + TakeErrors()); return info.Env().Undefined(); }
    EVP_MAC_CTX_free(previousMac_);
    previousMac_ = mac_;
    mac_ = next;
    return info.Env().Undefined();
  }

  // The peer key for the cookie: the bytes of a Uint8Array, or of a string.
  static bool PeerKey(Args& a, Napi::Value v, std::string* out) {
    if (v.IsString()) return a.String(v, "peerKey", out, false);
    View<uint8_t> k;
    if (!v.IsTypedArray()) return a.TypeFail("peerKey", "a string or a Uint8Array", v);
    if (!a.Array(v, "peerKey", &k)) return false;
    out->assign(reinterpret_cast<const char*>(k.data), k.len);
    return true;
  }

  // checkCookie(buf, offset, length, peerKey) -> 1: a ClientHello with a good cookie (one of
  // ours, for this peer key); 0: a ClientHello without a cookie; -1: with a cookie that is not
  // ours (forged, stale, another sender's); -2: not a whole, unfragmented ClientHello record
  // (which DTLSv1_listen would drop too). The datagram is buf[offset, offset + length).
  // Reads only the fields up to the cookie and computes one HMAC per secret: what a flood of
  // forged cookies costs, instead of OpenSSL parsing each ClientHello in DTLSv1_listen.
  Napi::Value CheckCookie(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!server_) { Throw(env, "checkCookie() is for server contexts"); return env.Undefined(); }
    Args a(info, "DtlsContext.checkCookie");
    View<uint8_t> buf, key;
    size_t off = 0, len = 0;
    if (!a.Array(info[0], "buf", &buf) || !a.Int(info[1], "offset", 0, static_cast<double>(buf.len), &off) ||
        !a.Int(info[2], "length", 0, static_cast<double>(buf.len - off), &len)) {
      return env.Undefined();
    }
    if (!info[3].IsTypedArray()) { a.TypeFail("peerKey", "a Uint8Array", info[3]); return env.Undefined(); }
    if (!a.Array(info[3], "peerKey", &key)) return env.Undefined();
    const uint8_t* d = buf.data + off;
    size_t cookieAt = 0, cookieLen = 0;
    if (!HelloCookie(d, len, &cookieAt, &cookieLen)) return Napi::Number::New(env, -2);
    if (cookieLen == 0) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, CookieGood(key.data, key.len, d + cookieAt, cookieLen) ? 1 : -1);
  }

  // Where the cookie of a DTLS ClientHello record is (RFC 6347 4.2.1; offsets: record header
  // 13 bytes, handshake header 12, client_version 2, random 32, session_id 1 + n, cookie 1 + n).
  // False when `d` is not one record holding one whole ClientHello (fragment offset 0, fragment
  // length = message length), or ends before the cookie does.
  static bool HelloCookie(const uint8_t* d, size_t len, size_t* at, size_t* cookieLen) {
    auto u16 = [d](size_t i) { return (static_cast<size_t>(d[i]) << 8) | d[i + 1]; };
    auto u24 = [d](size_t i) { return (static_cast<size_t>(d[i]) << 16) | (static_cast<size_t>(d[i + 1]) << 8) | d[i + 2]; };
    if (len < 61 || d[0] != 22 || d[1] != 0xfe || d[13] != 1) return false;
    size_t end = 13 + u16(11);  // the record's end
    if (end > len || u24(19) != 0 || u24(22) != u24(14) || 25 + u24(22) > end) return false;
    size_t sid = 60 + d[59];  // the cookie's length byte
    if (d[59] > 32 || sid >= end || sid + 1 + d[sid] > end) return false;
    *at = sid + 1;
    *cookieLen = d[sid];
    return true;
  }

  // Retransmission timer: start at retransmitMs (RFC 6347 says 1 s; a LAN or a test wants
  // less), then double on each loss up to 60 s, as OpenSSL's default does.
  static unsigned int TimerCallback(SSL* ssl, unsigned int previousUs) {
    auto* self = static_cast<Context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    unsigned int first = self ? self->retransmitUs_ : 1000000u;
    if (previousUs == 0) return first;
    return previousUs >= 30000000u ? 60000000u : previousUs * 2;
  }

  static void KeylogCallback(const SSL* ssl, const char* line) {
    auto* self = static_cast<Context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    if (self && self->keylogLines_.size() < 10000) self->keylogLines_.emplace_back(line);
  }

  // listen(datagram, peerKey: string | Uint8Array) -> DtlsConnection | Buffer[] (send these back) | null (dropped)
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!server_) { Throw(env, "listen() is for server contexts"); return env.Undefined(); }
    Args a(info, "DtlsContext.listen");
    View<uint8_t> buf;
    std::string peerKey;
    if (!a.Array(info[0], "datagram", &buf) || !PeerKey(a, info[1], &peerKey)) return env.Undefined();
    if (!listener_) listener_ = NewSsl();
    auto* st = static_cast<SslState*>(SSL_get_app_data(listener_));
    st->peerKey = std::move(peerKey);
    DgramState* ds = StateOf(listener_);
    // (An empty datagram is left out: to OpenSSL a read of 0 bytes is the end of the stream.)
    ds->in = buf.len ? buf.data : nullptr;
    ds->inLen = buf.len;
    ds->queue.clear();
    BIO_ADDR* addr = BIO_ADDR_new();
    int r = DTLSv1_listen(listener_, addr);
    BIO_ADDR_free(addr);
    ds->in = nullptr;
    ERR_clear_error();
    if (r == 1) {
      // The ClientHello carried a valid cookie: this SSL object becomes the connection.
      SSL* ssl = listener_;
      listener_ = nullptr;
      Napi::Object conn = Connection::Make(env);
      Connection::Unwrap(conn)->Adopt(ssl, Value(), true);
      return conn;
    }
    return TakeQueue(env, ds);
  }

  // connect(serverName) -> DtlsConnection; the name is checked against the certificate.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (server_) { Throw(env, "connect() is for client contexts"); return env.Undefined(); }
    std::string name;
    if (!info[0].IsUndefined() && !Args(info, "DtlsContext.connect").String(info[0], "serverName", &name)) return env.Undefined();
    SSL* ssl = NewSsl();
    SSL_set_connect_state(ssl);
    if (!name.empty()) {
      SSL_set_tlsext_host_name(ssl, name.c_str());
      SSL_set1_host(ssl, name.c_str());  // OpenSSL checks the SAN (or CN) during verification
    }
    Napi::Object conn = Connection::Make(env);
    Connection::Unwrap(conn)->Adopt(ssl, Value(), false);
    return conn;
  }

  Napi::Value TakeKeylog(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, keylogLines_.size());
    for (size_t i = 0; i < keylogLines_.size(); i++) out.Set(i, Napi::String::New(env, keylogLines_[i]));
    keylogLines_.clear();
    return out;
  }

  SSL_CTX* ctx_ = nullptr;
  SSL* listener_ = nullptr;
  bool server_ = false;
  bool keylog_ = false;
  int mtu_ = 1400;  // datagram payload size for handshake fragmentation
  unsigned int retransmitUs_ = 0;  // 0: OpenSSL's default timer
  std::vector<unsigned char> secret_;
  std::vector<unsigned char> previous_;
  EVP_MAC_CTX* mac_ = nullptr;          // keyed with secret_
  EVP_MAC_CTX* previousMac_ = nullptr;  // keyed with previous_ (none before the first rotation)
  static constexpr long kMaxCertList = 16 * 1024;
  std::vector<std::string> keylogLines_;
};

// ---------------------------------------------------------------------------------------
// Connection

Napi::Function Connection::Define(Napi::Env env) {
  return DefineClass(env, "DtlsConnection", {
    InstanceMethod<&Connection::Handshake>("handshake"),
    InstanceMethod<&Connection::Handle>("handle"),
    InstanceMethod<&Connection::TakeOutput>("takeOutput"),
    InstanceMethod<&Connection::Timeout>("timeout"),
    InstanceMethod<&Connection::HandleTimeout>("handleTimeout"),
    InstanceMethod<&Connection::Shutdown>("shutdown"),
    InstanceMethod<&Connection::Peer>("peer"),
    InstanceMethod<&Connection::Info>("info"),
    InstanceMethod<&Connection::SetMtu>("setMtu"),
    InstanceMethod<&Connection::Destroy>("destroy"),
    InstanceMethod<&Connection::BindStatus>("bindStatus"),
    InstanceAccessor<&Connection::ErrorGetter>("error"),
  });
}

Connection::Connection(const Napi::CallbackInfo& info) : Wrapped<Connection>(info) {}

void Connection::Adopt(SSL* ssl, Napi::Object ctxObj, bool server) {
  ssl_ = ssl;
  server_ = server;
  ctxRef_ = Napi::Persistent(ctxObj);
}

void Connection::Fail(const std::string& why) {
  state_ = FAILED;
  if (error_.empty()) error_ = why;
}

// Runs the handshake as far as the input allows. Error text names the reason a person can act on.
int Connection::Step() {
  if (state_ != HANDSHAKING || !ssl_) return state_;
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    state_ = OPEN;
    return state_;
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    return state_;
  }
  auto* st = static_cast<SslState*>(SSL_get_app_data(ssl_));
  long vr = SSL_get_verify_result(ssl_);
  std::string errs = TakeErrors();
  std::string why;
  if (vr != X509_V_OK && errs.find("certificate verify failed") != std::string::npos) {
    why = std::string("peer certificate rejected: ") + X509_verify_cert_error_string(vr);
  } else if (!st->alertIn.empty()) {
    why = "peer refused the handshake (alert: " + st->alertIn + ")";
  } else if (!errs.empty()) {
    why = errs;
  } else {
    why = "handshake failed (error " + std::to_string(err) + ")";
  }
  Fail(why);
  return state_;
}

Napi::Value Connection::Handshake(const Napi::CallbackInfo& info) {
  Step();
  Publish();
  return Napi::Number::New(info.Env(), state_);
}

// bindStatus(Float64Array of 3): where Publish() keeps [state, dropped, queued output].
Napi::Value Connection::BindStatus(const Napi::CallbackInfo& info) {
  if ((status_ = BindStatusArray(info, "DtlsConnection.bindStatus", 3, statusRef_))) Publish();
  return info.Env().Undefined();
}

// handle() -> the handle that dtlsOpen/dtlsSeal take.
Napi::Value Connection::Handle(const Napi::CallbackInfo& info) { return NewObjHandle(info.Env(), this); }

// dtlsOpen(conn, inBatch, index, count, outBatch, outFirst) -> the record count in out.
// Feeds datagrams index..index+count-1 of a batch to OpenSSL and reads every application
// record they yield straight into the output batch (one SSL_read per record, no copies in
// between), after its first outFirst records: a caller can gather a whole receive batch's
// packets and write them to the TUN in one call. Handshake progress, alerts and close_notify
// are handled on the way; the connection's status array says what happened.
Napi::Value Connection::OpenHandles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Connection* c = ObjFromHandle<Connection>(env, info[0], "dtlsOpen");
  BatchRef* in = c ? BatchFromHandle(env, info[1], "dtlsOpen") : nullptr;
  BatchRef* out = in ? BatchFromHandle(env, info[4], "dtlsOpen") : nullptr;
  if (!out) return env.Undefined();
  Args a(info, "dtlsOpen");
  size_t index = 0, n = 0, count = 0;
  if (!a.Int(info[2], "index", 0, in->cap, &index) || !a.Int(info[3], "count", 0, in->cap - index, &n) ||
      !a.Int(info[5], "outFirst", 0, out->cap, &count)) {
    return env.Undefined();
  }
  // Records go after the first `count` (8-byte aligned, as OpenInto lays them out).
  size_t used = count > 0 ? (static_cast<size_t>(out->offs[count - 1]) + out->lens[count - 1] + 7) & ~static_cast<size_t>(7) : 0;
  if (used > out->bufLen) used = out->bufLen;
  if (c->ssl_) count = c->OpenInto(in->buf, in->bufLen, in->offs + index, in->lens + index, static_cast<uint32_t>(n),
                                   out->buf, out->bufLen, out->offs, out->lens, out->cap, count, used);
  return Napi::Number::New(env, static_cast<double>(count));
}

size_t Connection::OpenInto(const uint8_t* in, size_t inLen, const uint32_t* inOffs, const uint32_t* inLens, uint32_t inCount,
                            uint8_t* out, size_t outLen, uint32_t* outOffs, uint32_t* outLens, size_t outMax,
                            size_t count, size_t used) {
  DgramState* ds = StateOf(ssl_);
  for (uint32_t i = 0; i < inCount && state_ <= OPEN; i++) {
    if (static_cast<size_t>(inOffs[i]) + inLens[i] > inLen) continue;
    // An empty UDP datagram is legal on the wire, but to OpenSSL a read of 0 bytes is the end
    // of the stream: it would fail the connection. Anyone can send one; drop it.
    if (inLens[i] == 0) {
      if (state_ == OPEN) dropped_++;
      continue;
    }
    ds->in = in + inOffs[i];
    ds->inLen = inLens[i];
    bool handshakeDatagram = state_ == HANDSHAKING;
    if (handshakeDatagram) {
      Step();
      if (state_ != OPEN) { ds->in = nullptr; continue; }
    }
    size_t before = count;
    // A datagram may carry several records; keep reading until OpenSSL wants more input.
    while (count < outMax && outLen - used >= 2048) {
      int r = SSL_read(ssl_, out + used, static_cast<int>(outLen - used));
      if (r > 0) {
        outOffs[count] = static_cast<uint32_t>(used);
        outLens[count] = static_cast<uint32_t>(r);
        count++;
        used += (static_cast<size_t>(r) + 7) & ~static_cast<size_t>(7);
        // The datagram is consumed and OpenSSL holds nothing more of it: it carried one
        // record, the usual case. Stop rather than call SSL_read again only to hear "want
        // read": with cold caches (a ping every 50 ms) that call, SSL_get_error and
        // ERR_clear_error cost about 4 us per datagram, on each end of a round trip.
        if (ds->in == nullptr && !SSL_has_pending(ssl_)) break;
        continue;
      }
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_ZERO_RETURN) {
        state_ = CLOSED;  // close_notify from the peer
        if (error_.empty()) error_ = "peer closed the connection (close_notify)";
      } else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        auto* st = static_cast<SslState*>(SSL_get_app_data(ssl_));
        std::string errs = TakeErrors();
        Fail(!st->alertIn.empty() ? "peer sent alert: " + st->alertIn : errs.empty() ? "read failed" : errs);
      }
      ERR_clear_error();
      break;
    }
    // Nothing came out of a datagram that was consumed: OpenSSL discarded it as a replay,
    // a forgery or garbage (RFC 6347: invalid records are dropped silently). Handshake and
    // ChangeCipherSpec records (content types 22, 20) are not counted: after the handshake
    // they are the peer's retransmissions, which OpenSSL answers, not attacks on the data.
    uint8_t ct = in[inOffs[i]];  // (empty datagrams were skipped above)
    bool handshakeLayer = ct == 22 || ct == 20;
    if (count == before && !handshakeDatagram && !handshakeLayer && ds->in == nullptr && state_ == OPEN) dropped_++;
    ds->in = nullptr;
  }
  Publish();
  return count;
}

// dtlsSeal(conn, inBatch, count, outBatch) -> records written to out: one record per packet
// of the first `count` of a batch. Records that do not fit in out go to the output queue
// (takeOutput).
Napi::Value Connection::SealHandles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Connection* c = ObjFromHandle<Connection>(env, info[0], "dtlsSeal");
  BatchRef* in = c ? BatchFromHandle(env, info[1], "dtlsSeal") : nullptr;
  BatchRef* out = in ? BatchFromHandle(env, info[3], "dtlsSeal") : nullptr;
  uint32_t count = 0;
  if (!out || !Args(info, "dtlsSeal").Int(info[2], "count", 0, in->cap, &count)) return env.Undefined();
  if (!c->ssl_ || c->state_ != OPEN) {
    Napi::Error::New(env, "seal: the connection is not open").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  size_t n = c->SealInto(in->buf, in->bufLen, in->offs, in->lens, count, out->buf, out->bufLen, out->offs, out->lens, out->cap);
  return Napi::Number::New(env, static_cast<double>(n));
}

size_t Connection::SealInto(const uint8_t* in, size_t inLen, const uint32_t* inOffs, const uint32_t* inLens, uint32_t inCount,
                            uint8_t* out, size_t outLen, uint32_t* outOffs, uint32_t* outLens, size_t outMax) {
  Sink sink;
  sink.buf = out;
  sink.cap = outLen;
  sink.offs = outOffs;
  sink.lens = outLens;
  sink.max = outMax;
  DgramState* ds = StateOf(ssl_);
  ds->sink = &sink;
  for (uint32_t i = 0; i < inCount; i++) {
    if (static_cast<size_t>(inOffs[i]) + inLens[i] > inLen || inLens[i] == 0) continue;
    int r = SSL_write(ssl_, in + inOffs[i], static_cast<int>(inLens[i]));
    if (r <= 0) {
      Fail("write failed: " + TakeErrors());
      break;
    }
  }
  ds->sink = nullptr;
  Publish();
  return sink.count;
}

// takeOutput() -> Buffer[] | null: datagrams OpenSSL wants sent (handshake flights,
// retransmissions, alerts, close_notify, sealed records that did not fit).
Napi::Value Connection::TakeOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ssl_) return env.Null();
  Napi::Value out = TakeQueue(env, StateOf(ssl_));
  Publish();
  return out;
}

// timeout() -> ms until OpenSSL's retransmission timer fires, or -1 if none is running.
Napi::Value Connection::Timeout(const Napi::CallbackInfo& info) {
  struct timeval tv;
  if (!ssl_ || DTLSv1_get_timeout(ssl_, &tv) != 1) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0);
}

// handleTimeout(): retransmits the last flight when due; after too many, the handshake fails.
Napi::Value Connection::HandleTimeout(const Napi::CallbackInfo& info) {
  if (!ssl_) return Napi::Number::New(info.Env(), state_);
  if (DTLSv1_handle_timeout(ssl_) < 0) Fail("handshake timed out: no answer from the peer");
  ERR_clear_error();
  Publish();
  return Napi::Number::New(info.Env(), state_);
}

Napi::Value Connection::Shutdown(const Napi::CallbackInfo& info) {
  if (ssl_ && state_ == OPEN) {
    SSL_shutdown(ssl_);  // queues close_notify
    ERR_clear_error();
    state_ = CLOSED;
  }
  Publish();
  return info.Env().Undefined();
}

static double AsnTimeMs(const ASN1_TIME* t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<double>(timegm(&tm)) * 1000.0;
}

static std::string NameLine(X509_NAME* n) {
  BIO* b = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253);
  char* p;
  long len = BIO_get_mem_data(b, &p);
  std::string s(p, len);
  BIO_free(b);
  return s;
}

// peer() -> { cn, subject, issuer, fingerprint256, validFrom, validTo, serial } | null
Napi::Value Connection::Peer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ssl_) return env.Null();
  X509* x = SSL_get1_peer_certificate(ssl_);
  if (!x) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  // The whole CN as UTF-8, embedded NULs and all: a C string would cut "alice\0x" down to
  // "alice" (and a fixed buffer would cut a long one), passing it off as another name. JS
  // checks it (isValidCn) before it names anything.
  std::string cn;
  X509_NAME* subject = X509_get_subject_name(x);
  int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at >= 0) {
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
    if (len >= 0) cn.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
  }
  o.Set("cn", Napi::String::New(env, cn));
  o.Set("subject", NameLine(X509_get_subject_name(x)));
  o.Set("issuer", NameLine(X509_get_issuer_name(x)));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  X509_digest(x, EVP_sha256(), md, &n);
  std::string fp;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned int i = 0; i < n; i++) {
    if (i) fp += ':';
    fp += hex[md[i] >> 4];
    fp += hex[md[i] & 15];
  }
  o.Set("fingerprint256", fp);
  o.Set("validFrom", AsnTimeMs(X509_get0_notBefore(x)));
  o.Set("validTo", AsnTimeMs(X509_get0_notAfter(x)));
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  char* s = BN_bn2hex(bn);
  o.Set("serial", s);
  OPENSSL_free(s);
  BN_free(bn);
  X509_free(x);
  return o;
}

Napi::Value Connection::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (!ssl_) return o;
  o.Set("version", SSL_get_version(ssl_));
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  o.Set("cipher", c ? SSL_CIPHER_get_name(c) : "");
  o.Set("dataMtu", Napi::Number::New(env, static_cast<double>(DTLS_get_data_mtu(ssl_))));
  return o;
}

Napi::Value Connection::SetMtu(const Napi::CallbackInfo& info) {
  int mtu = 0;
  if (!Args(info, "DtlsConnection.setMtu").Int(info[0], "mtu", 1, 65535, &mtu)) return info.Env().Undefined();
  if (ssl_) SSL_set_mtu(ssl_, mtu);
  return info.Env().Undefined();
}

Napi::Value Connection::Destroy(const Napi::CallbackInfo& info) {
  Free();
  if (state_ < CLOSED) state_ = CLOSED;
  Publish();
  return info.Env().Undefined();
}

}  // namespace

Napi::Object InitDtls(Napi::Env env, Napi::Object exports) {
  Napi::Function conn = Connection::Define(env);
  // Per-environment (main thread or worker) reference, so native code can create connections.
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(conn)));
  exports.Set("DtlsConnection", conn);
  exports.Set("DtlsContext", Context::Define(env));
  exports.Set("dtlsOpen", Napi::Function::New<Connection::OpenHandles>(env, "dtlsOpen"));
  exports.Set("dtlsSeal", Napi::Function::New<Connection::SealHandles>(env, "dtlsSeal"));
  exports.Set("opensslVersion", Napi::String::New(env, OpenSSL_version(OPENSSL_VERSION)));
  return exports;
}
