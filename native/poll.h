// A file descriptor watched by uv_poll on the event loop thread, shared by the TUN device
// and the UDP socket: start/stop, ref/unref, and an environment cleanup hook so that a
// worker thread's exit or process exit closes the fd without calling into JavaScript.
#pragma once
#include <napi.h>
#include <uv.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

// Yielding after a hand-off. A UDP datagram or a TUN write that wakes another process wakes
// it with a "sync" wake-up: the kernel expects us to sleep next and often runs it on our
// CPU, where it waits until we do. Our way to sleep is long (back out of JavaScript, Node's
// check phase, libuv's polls: 15 to 30 us with cold caches, against 4 to 8 for a C loop),
// and for a ping that wait is part of the round trip. So in a callback whose batch was small
// (interactive traffic, where each packet is waited for), each hand-off gives the CPU up with
// sched_yield() right after the send or TUN write, before the rest of the callback and the
// loop turn; a callback that handed nothing on yields not at all, and a full batch (bulk
// traffic) keeps the CPU. JavaScript sets the limits (setHandoffYield; 0 turns it off), the
// senders call NoteHandoff.
//
// A yield only helps when the process we woke is what runs instead of us. When another
// program keeps this CPU busy, it runs instead, for a whole time slice (milliseconds), and the
// next packet waits for it: so a yield that kept us off the CPU for longer than `maxAwayMs`
// pauses yielding for `pauseMs`. (Not doubled while the CPU stays busy: bulk traffic makes
// slow yields too, and the pings after it should find yielding back within a second.)
struct Handoff {
  double maxBatch = 0;  // yield at the hand-offs of a callback whose batch had at most this many packets
  double maxAwayMs = 1;  // a yield longer than this means a busy CPU
  double pauseMs = 1000;  // then no yields for this long
  double yields = 0;  // how often we yielded (tests, status)
  double slow = 0;  // how many of them took longer than maxAwayMs
  double pausedUntil = 0;  // monotonic ms
  double batch = 0;  // packets handed to the reader's callback running now (0: none running)
};
inline thread_local Handoff t_handoff;
inline double MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
inline void HandoffYield() {
  Handoff& h = t_handoff;
  double t0 = MonotonicMs();
  if (t0 < h.pausedUntil) return;
  sched_yield();
  h.yields++;
  if (MonotonicMs() - t0 > h.maxAwayMs) {
    h.slow++;
    h.pausedUntil = t0 + h.pauseMs;
  }
}
// Packets a reader's callback read itself (tunRead, udpRead) count towards its batch: it is
// as small as all it handled. (Outside a callback, batch stays 0: no yields there.)
inline void NoteRead(int n) {
  if (n > 0 && t_handoff.batch > 0) t_handoff.batch += n;
}
// A send or TUN write passed packets on: yield now if the running callback's batch is small.
inline void NoteHandoff() {
  Handoff& h = t_handoff;
  if (h.batch > 0 && h.batch <= h.maxBatch) HandoffYield();
}

class PolledFd {
 public:
  virtual ~PolledFd() { CloseFd(); }

 protected:
  // Subclasses read as much as they like here; the poll is level-triggered.
  virtual void OnReadable() = 0;
  // A pending socket error (e.g. ECONNREFUSED after an ICMP port unreachable). libuv stops
  // a poll handle on POLLERR; we take the error, report it, and start polling again.
  virtual void OnError() {}

  void Adopt(napi_env env, int fd) {
    fd_ = fd;
    env_ = env;
    napi_add_env_cleanup_hook(env, CleanupHook, this);
    hook_ = true;
  }

  bool StartPoll(napi_env env) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    if (uv_poll_init(loop, poll_, fd_) != 0) { delete poll_; poll_ = nullptr; return false; }
    poll_->data = this;
    uv_poll_start(poll_, UV_READABLE, OnPoll);
    if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return true;
  }

  void SetRef(bool on) {
    refed_ = on;
    if (!poll_) return;
    if (on) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    else uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }

  // Returns true if a reader was running (the caller releases what it held for it).
  bool StopPoll() {
    drain_.Reset();
    if (!poll_) return false;
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
    return true;
  }

  void CloseFd() {
    StopPoll();
    if (fd_ >= 0) { ::close(fd_); fd_ = -1; }
    if (hook_) { napi_remove_env_cleanup_hook(env_, CleanupHook, this); hook_ = false; }
  }

  bool polling() const { return poll_ != nullptr; }

  // The event loop's clock (uv_now: monotonic ms, updated when the poll returned), handed to
  // JavaScript with each batch so the data path stamps it without reading a clock itself.
  double LoopNow() const { return poll_ ? static_cast<double>(uv_now(poll_->loop)) : 0; }

  // Hands a batch to JavaScript: cb(count, nowMs).
  //
  // Not MakeCallback, which Node's own I/O uses: it also finds the Node environment from the
  // function's creation context, enters an async context and, on the way out, runs the
  // promise jobs and process.nextTick callbacks that were queued. With the caches cold (a
  // ping every 50 ms), that cost about 7 µs per batch, four batches per ping. Forwarding
  // packets queues none of those; so cb returns false when it did nothing else, and only
  // otherwise (control messages, handshakes, logs, hooks: anything that may have queued a
  // promise job or a tick) do we run a MakeCallback of a no-op, which drains them as usual.
  // An exception thrown by cb goes to 'uncaughtException', as with MakeCallback.
  void CallJs(Napi::Env env, Napi::FunctionReference& cb, napi_value recv, double count, double now) {
    if (count > 0) t_handoff.batch += count;  // (NoteHandoff reads it: a small batch yields)
    Napi::Value r = cb.Call(recv, {Napi::Number::New(env, count), Napi::Number::New(env, now)});
    if (env.IsExceptionPending()) {
      napi_fatal_exception(env, env.GetAndClearPendingException().Value());
      return;
    }
    if (r.IsBoolean() && !r.As<Napi::Boolean>().Value()) return;
    if (drain_.IsEmpty()) drain_ = Napi::Persistent(Napi::Function::New(env, [](const Napi::CallbackInfo&) {}, "drain"));
    drain_.MakeCallback(recv, {});
  }

  int fd_ = -1;

 private:
  static void OnPoll(uv_poll_t* h, int status, int) {
    auto* self = static_cast<PolledFd*>(h->data);
    if (self->fd_ < 0) return;
    if (status < 0) {
      self->OnError();
      if (self->poll_ == h && self->fd_ >= 0) uv_poll_start(h, UV_READABLE, OnPoll);
      return;
    }
    t_handoff.batch = 0;
    self->OnReadable();
    t_handoff.batch = 0;  // hand-offs outside a reader's callback (timers, handshakes) do not yield
  }

  static void CleanupHook(void* arg) {
    auto* self = static_cast<PolledFd*>(arg);
    self->hook_ = false;  // being consumed: do not remove it
    self->StopPoll();
    if (self->fd_ >= 0) { ::close(self->fd_); self->fd_ = -1; }
  }

  napi_env env_ = nullptr;
  Napi::FunctionReference drain_;  // a no-op, called with MakeCallback to run queued jobs (CallJs)
  uv_poll_t* poll_ = nullptr;
  bool hook_ = false;
  bool refed_ = true;
};
