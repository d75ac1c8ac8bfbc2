// ByteStream adapter. Each call is a reactor that owns its BlobReader or
// BlobWriter. Both pipeline disk and network: a Read reactor reads the next
// chunk on the pool while gRPC sends the previous one, a Write reactor
// receives the next message while the pool appends the previous one, each
// with two buffers and a small lock-protected state (see the classes).
// Interrupted uploads are parked in UploadRegistry keyed by the canonical
// upload name ({instance}/uploads/{uuid}/blobs/{hash}/{size}, metadata
// dropped).
#include "cas/service/bytestream_service.h"

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/slice.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cas/resource_name.h"
#include "cas/service/service_util.h"
#include "cas/zstd_codec.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "rpc/grpc_status.h"
#include "rpc/reactors.h"

namespace cairn::cas {
namespace {

namespace bs = ::google::bytestream;
using rpc::ToGrpcStatus;

// The retry delay a refusal by a stream or upload cap suggests: calls and
// uploads typically end within a second, and clients back off from there.
constexpr absl::Duration kCapRetryDelay = absl::Seconds(1);

// Returns the registry key of an upload: its name without metadata.
std::string UploadKey(const ResourceName& name) {
  return MakeWriteResourceName(name.instance_name, name.uuid, name.digest,
                               name.compressor);
}

// Interrupted and in-progress uploads. An entry is "active" while a Write
// call owns its writer, "parked" (holding the writer) between calls. Each
// entry belongs to the client that opened it (rpc::PrincipalOf) and counts
// its blob's size as reserved (the store reserves it when the writer opens).
// Limits (UploadLimits) are checked when an upload opens: a client over its
// own limit first loses its oldest parked uploads, then is refused; the
// total limit drops the oldest parked upload of the client holding the most.
// Parked uploads beyond max_parked are dropped the same way, so a client
// parking thousands of uploads drops its own, not everyone else's.
class UploadRegistry {
 public:
  UploadRegistry(size_t max_parked, absl::Duration idle_timeout,
                 const UploadLimits& limits, UploadLimitStats* stats)
      : max_parked_(max_parked),
        idle_timeout_(idle_timeout),
        limits_(limits),
        stats_(stats) {}

  // Marks `key` active for `owner` (reserving `size` bytes) and returns its
  // parked writer (null when none). ABORTED when another call is writing
  // the same upload; RESOURCE_EXHAUSTED when a limit refuses a new one.
  absl::StatusOr<std::unique_ptr<BlobWriter>> Claim(const std::string& key,
                                                    const std::string& owner,
                                                    int64_t size) {
    std::vector<std::unique_ptr<BlobWriter>> dropped;
    absl::MutexLock lock(&mu_);
    dropped = SweepLocked();
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      absl::Status room = MakeRoomLocked(owner, size, &dropped);
      if (!room.ok()) {
        return room;
      }
      it = entries_.emplace(key, Entry{}).first;
      it->second.owner = owner;
      it->second.size = size;
      Account(it->second, +1);
    }
    Entry& entry = it->second;
    if (entry.active) {
      return absl::AbortedError(
          absl::StrCat("Write: upload ", key, " is already in progress"));
    }
    entry.active = true;
    return std::move(entry.writer);
  }

  // Records progress of an active upload (for QueryWriteStatus).
  void Progress(const std::string& key, int64_t committed) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      it->second.committed = committed;
    }
  }

  // Keeps `writer` for a later resume, dropping expired or excess uploads.
  // `key` must have been claimed.
  void Park(const std::string& key, std::unique_ptr<BlobWriter> writer) {
    std::vector<std::unique_ptr<BlobWriter>> dropped;
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      return;  // Dropped meanwhile: `writer` goes (off the lock, by scope).
    }
    Entry& entry = it->second;
    entry.committed = writer->committed_size();
    dropped.push_back(std::exchange(entry.writer, std::move(writer)));
    entry.active = false;
    entry.parked_at = absl::Now();
    SweepLocked(&dropped);
  }

  // Forgets `key` (the upload finished or failed).
  void Release(const std::string& key) {
    std::unique_ptr<BlobWriter> dropped;
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      dropped = EraseLocked(it);
    }
  }

  // Drops parked uploads idle for longer than the timeout.
  void SweepExpired() {
    std::vector<std::unique_ptr<BlobWriter>> dropped;
    absl::MutexLock lock(&mu_);
    dropped = SweepLocked();
  }

  // Forgets `key` unless a call is writing it.
  void DropParked(const std::string& key) {
    std::unique_ptr<BlobWriter> dropped;
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && !it->second.active) {
      dropped = EraseLocked(it);
    }
  }

  // Returns the committed size of an active or parked upload.
  std::optional<int64_t> Committed(const std::string& key) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      return std::nullopt;
    }
    return it->second.committed;
  }

 private:
  struct Entry {
    std::unique_ptr<BlobWriter> writer;  // Null while active.
    int64_t committed = 0;
    bool active = false;
    absl::Time parked_at;
    std::string owner;
    int64_t size = 0;  // Reserved in the store.
  };
  struct Usage {
    int64_t uploads = 0;
    int64_t bytes = 0;
  };
  using Map = absl::flat_hash_map<std::string, Entry>;

  // Adds (sign +1) or removes (-1) `entry` from the per-owner and total
  // counts.
  void Account(const Entry& entry, int sign)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Usage& u = usage_[entry.owner];
    u.uploads += sign;
    u.bytes += sign * entry.size;
    total_bytes_ += sign * entry.size;
    if (u.uploads == 0) {
      usage_.erase(entry.owner);
    }
  }

  // Removes the entry at `it`, returning its writer to destroy off the lock.
  std::unique_ptr<BlobWriter> EraseLocked(Map::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Account(it->second, -1);
    std::unique_ptr<BlobWriter> writer = std::move(it->second.writer);
    entries_.erase(it);
    return writer;
  }

  // Returns the oldest parked entry of `owner` (any owner when empty), or
  // entries_.end().
  Map::iterator OldestParkedLocked(absl::string_view owner)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Map::iterator best = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!it->second.active && (owner.empty() || it->second.owner == owner) &&
          (best == entries_.end() ||
           it->second.parked_at < best->second.parked_at)) {
        best = it;
      }
    }
    return best;
  }

  // Returns the owner holding the most parked uploads.
  std::string HeaviestParkerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::flat_hash_map<absl::string_view, int64_t> parked;
    std::string heaviest;
    int64_t most = 0;
    for (const auto& [key, entry] : entries_) {
      if (!entry.active && ++parked[entry.owner] > most) {
        most = parked[entry.owner];
        heaviest = entry.owner;
      }
    }
    return heaviest;
  }

  // Drops parked uploads of `owner` (or, for the total, of the heaviest
  // parker) until a new upload of `size` bytes fits every limit.
  absl::Status MakeRoomLocked(const std::string& owner, int64_t size,
                              std::vector<std::unique_ptr<BlobWriter>>* dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto over_client = [&] {
      auto it = usage_.find(owner);
      Usage u = it == usage_.end() ? Usage{} : it->second;
      if (limits_.max_uploads_per_client > 0 &&
          u.uploads + 1 > limits_.max_uploads_per_client) {
        return 1;
      }
      // A client's only upload is always admitted (the store's own
      // reservation bounds it), so a blob larger than the cap still fits.
      if (limits_.max_bytes_per_client > 0 && u.uploads > 0 &&
          u.bytes + size > limits_.max_bytes_per_client) {
        return 2;
      }
      return 0;
    };
    for (int why = over_client(); why != 0; why = over_client()) {
      Map::iterator victim = OldestParkedLocked(owner);
      if (victim == entries_.end()) {
        std::atomic<int64_t>* counter = why == 1
                                            ? &stats_->refused_client_uploads
                                            : &stats_->refused_client_bytes;
        counter->fetch_add(1);
        return rpc::WithRetryDelay(
            absl::ResourceExhaustedError(absl::StrCat(
                "Write: client ", owner, " has too many uploads open (",
                usage_[owner].uploads, " reserving ", usage_[owner].bytes,
                " bytes; limits ", limits_.max_uploads_per_client, " uploads, ",
                limits_.max_bytes_per_client,
                " bytes); finish or cancel some, then retry")),
            kCapRetryDelay);
      }
      stats_->dropped_parked.fetch_add(1);
      dropped->push_back(EraseLocked(victim));
    }
    while (limits_.max_bytes > 0 && total_bytes_ > 0 &&
           total_bytes_ + size > limits_.max_bytes) {
      Map::iterator victim = OldestParkedLocked(HeaviestParkerLocked());
      if (victim == entries_.end()) {
        stats_->refused_total_bytes.fetch_add(1);
        return rpc::WithRetryDelay(
            absl::ResourceExhaustedError(absl::StrCat(
                "Write: uploads in progress reserve ", total_bytes_,
                " bytes (limit ", limits_.max_bytes, "); retry later")),
            kCapRetryDelay);
      }
      stats_->dropped_parked.fetch_add(1);
      dropped->push_back(EraseLocked(victim));
    }
    return absl::OkStatus();
  }

  // Removes expired parked uploads and, beyond max_parked_, the oldest of
  // the client parking the most. The caller destroys the writers after
  // unlocking (that touches disk; lock order: mu_ before any store lock is
  // never needed).
  void SweepLocked(std::vector<std::unique_ptr<BlobWriter>>* dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time now = absl::Now();
    size_t parked = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
      auto cur = it++;
      if (cur->second.active) {
        continue;
      }
      if (now - cur->second.parked_at > idle_timeout_) {
        dropped->push_back(EraseLocked(cur));
      } else {
        ++parked;
      }
    }
    for (; parked > max_parked_; --parked) {
      stats_->dropped_parked.fetch_add(1);
      dropped->push_back(
          EraseLocked(OldestParkedLocked(HeaviestParkerLocked())));
    }
  }
  std::vector<std::unique_ptr<BlobWriter>> SweepLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::unique_ptr<BlobWriter>> dropped;
    SweepLocked(&dropped);
    return dropped;
  }

  const size_t max_parked_;
  const absl::Duration idle_timeout_;
  const UploadLimits limits_;
  UploadLimitStats* const stats_;  // Not owned.
  absl::Mutex mu_;
  Map entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Usage> usage_ ABSL_GUARDED_BY(mu_);
  int64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// Counts the ByteStream calls each client has open and refuses one past
// the cap. A Slot gives its count back when destroyed (with its reactor).
class ClientStreams {
 public:
  class Slot {
   public:
    Slot(ClientStreams* streams, std::string owner)
        : streams_(streams), owner_(std::move(owner)) {}
    Slot(Slot&& other) noexcept
        : streams_(std::exchange(other.streams_, nullptr)),
          owner_(std::move(other.owner_)) {}
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (streams_ != nullptr) {
        streams_->Remove(owner_);
      }
    }

   private:
    ClientStreams* streams_;  // Not owned; null when moved from.
    std::string owner_;
  };

  ClientStreams(int64_t max_per_client, UploadLimitStats* stats)
      : max_(max_per_client), stats_(stats) {}

  // Counts a new call of `owner`; RESOURCE_EXHAUSTED past the cap.
  absl::StatusOr<Slot> Acquire(const std::string& owner) {
    absl::MutexLock lock(&mu_);
    int64_t& open = open_[owner];
    if (max_ > 0 && open >= max_) {
      stats_->refused_client_streams.fetch_add(1);
      return rpc::WithRetryDelay(
          absl::ResourceExhaustedError(
              absl::StrCat("ByteStream: client ", owner, " has ", open,
                           " calls open (limit ", max_,
                           "); retry when one has finished, with backoff")),
          kCapRetryDelay);
    }
    ++open;
    return Slot(this, owner);
  }

 private:
  void Remove(const std::string& owner) {
    absl::MutexLock lock(&mu_);
    auto it = open_.find(owner);
    if (it != open_.end() && --it->second <= 0) {
      open_.erase(it);
    }
  }

  const int64_t max_;
  UploadLimitStats* const stats_;  // Not owned.
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> open_ ABSL_GUARDED_BY(mu_);
};

// A read buffer gRPC sends without copying it: ReadResponseOf() hands gRPC
// a slice over the bytes that holds a reference to the buffer until gRPC has
// written it out. The reactor refills a buffer only once gRPC holds no
// reference to it (InUse() is false), else it takes a fresh one and the old
// one goes when gRPC drops it. Used by one producer at a time; gRPC may drop
// its references on any thread.
class SharedReadBuffer {
 public:
  SharedReadBuffer() : block_(new Block) {}
  SharedReadBuffer(SharedReadBuffer&& other) noexcept
      : block_(std::exchange(other.block_, nullptr)) {}
  SharedReadBuffer& operator=(SharedReadBuffer&& other) noexcept {
    std::swap(block_, other.block_);
    return *this;
  }
  ~SharedReadBuffer() {
    if (block_ != nullptr) {
      Unref(block_);
    }
  }

  // Returns the bytes to fill; only while !InUse().
  std::string* bytes() { return &block_->bytes; }

  // Returns true while gRPC still holds a message made from the buffer.
  bool InUse() const {
    return block_->refs.load(std::memory_order_acquire) > 1;
  }

  // Returns a slice over bytes() that keeps them alive while gRPC holds it.
  grpc::Slice Share() {
    block_->refs.fetch_add(1, std::memory_order_relaxed);
    return grpc::Slice(block_->bytes.data(), block_->bytes.size(), &Unref,
                       block_);
  }

 private:
  struct Block {
    std::atomic<int> refs{1};
    std::string bytes;
  };

  static void Unref(void* block) {
    auto* b = static_cast<Block*>(block);
    if (b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      delete b;
    }
  }

  Block* block_;  // Null only when moved from.
};

// Returns the wire form of a ReadResponse whose data is `buffer`'s bytes
// (not empty): the key of `bytes data = 10` and the length, as protobuf
// would write them, then the bytes themselves, shared, not copied.
grpc::ByteBuffer ReadResponseOf(SharedReadBuffer* buffer) {
  using google::protobuf::internal::WireFormatLite;
  uint8_t header[16];
  uint8_t* end = WireFormatLite::WriteTagToArray(
      bs::ReadResponse::kDataFieldNumber,
      WireFormatLite::WIRETYPE_LENGTH_DELIMITED, header);
  end = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(
      buffer->bytes()->size(), end);
  grpc::Slice slices[2] = {grpc::Slice(header, end - header), buffer->Share()};
  return grpc::ByteBuffer(slices, 2);
}

// Streams one Read call. Owned by gRPC; deletes itself in OnDone().
//
// Pipelined: while gRPC sends chunk N, a pool task ("the producer") reads
// chunk N+1 from the store into the other of two response slots, so disk and
// network overlap; at most two chunks are held per call. The call is
// finished by whichever side acts last: the producer when no write is
// outstanding, else OnWriteDone() once the producer has stopped. Messages go
// out as raw ByteBuffers over the slots' buffers (ReadResponseOf), so gRPC
// does not copy each chunk into a serialised message of its own.
class ReadReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  ReadReactor(const ByteStreamServiceOptions& options,
              const bs::ReadRequest& request, ClientStreams::Slot slot)
      : options_(options),
        slot_(std::move(slot)),
        offset_(request.read_offset()) {
    if (options_.read_buffers != nullptr) {
      options_.read_buffers->AddStream();
    }
    absl::Status status = Validate(request);
    if (!status.ok()) {
      Finish(ToGrpcStatus(status));
      return;
    }
    producing_ = true;
    ScheduleProducer();
  }

  void OnWriteDone(bool ok) override {
    int send = -1;
    bool produce = false;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ >= 0 && slots_[writing_].last) {
        return;  // StartWriteAndFinish() ended the call.
      }
      writing_ = -1;
      if (!ok) {
        if (producing_) {
          cancelled_ = true;  // The producer finishes the call.
          return;
        }
      } else if (ready_ >= 0) {
        send = ready_;
        ready_ = -1;
        writing_ = send;
        if (!slots_[send].last && !producing_) {
          producing_ = true;
          produce = true;
        }
      } else {
        return;  // The producer is filling the next chunk; it sends it.
      }
    }
    if (!ok) {
      Finish(ToGrpcStatus(absl::CancelledError("Read: client went away")));
      return;
    }
    SendThenProduce(send, produce);
  }

  ~ReadReactor() override {
    if (options_.read_buffers != nullptr) {
      options_.read_buffers->Release(slots_[0].granted + slots_[1].granted);
      options_.read_buffers->RemoveStream();
    }
  }

  void OnDone() override { delete this; }

 private:
  struct Slot {
    SharedReadBuffer buffer;  // The chunk's bytes.
    grpc::ByteBuffer message;  // What is sent: empty for no message.
    bool last = false;    // The call ends with this slot.
    absl::Status status;  // For the last slot: how the call ends.
    size_t granted = 0;   // Bytes granted by options_.read_buffers.
  };

  absl::Status Validate(const bs::ReadRequest& request) {
    absl::StatusOr<ResourceName> name =
        ParseReadResourceName(request.resource_name());
    if (!name.ok()) {
      return name.status();
    }
    digest_ = name->digest;
    if (name->compressor == Compressor::kZstd) {
      if (request.read_limit() != 0) {
        return absl::InvalidArgumentError(
            "Read: read_limit must be 0 for compressed-blobs");
      }
      compressor_ = std::make_unique<ZstdCompressor>();
    }
    const int64_t size = digest_.size_bytes();
    if (offset_ < 0 || offset_ > size) {
      return absl::OutOfRangeError(absl::StrCat("Read: read_offset ", offset_,
                                                " outside cas blob ",
                                                digest_.ToString()));
    }
    if (request.read_limit() < 0) {
      return absl::InvalidArgumentError("Read: negative read_limit");
    }
    remaining_ = size - offset_;
    if (request.read_limit() > 0 && request.read_limit() < remaining_) {
      remaining_ = request.read_limit();
      to_end_ = false;
    }
    return absl::OkStatus();
  }

  // Starts the producer (producing_ is already set). When the pool refuses,
  // the call ends with that status once no write is outstanding.
  void ScheduleProducer() {
    absl::Status status = options_.pool->Schedule(
        "Read", [this] { Produce(); }, rpc::Lane::kStream);
    if (status.ok()) {
      return;
    }
    bool finish_now;
    {
      absl::MutexLock lock(&mu_);
      producing_ = false;
      finish_now = writing_ < 0;
      if (!finish_now) {
        // Ends the call after the outstanding write.
        int free = 1 - writing_;
        slots_[free].message.Clear();
        slots_[free].last = true;
        slots_[free].status = status;
        ready_ = free;
      }
    }
    if (finish_now) {
      Finish(ToGrpcStatus(status));
    }
  }

  // Sends slots_[i] and then, when `produce` (producing_ is already set),
  // runs the producer, in one pool task: the call's batch and the
  // socket write that StartWrite() may do at once stay off gRPC's callback
  // threads, which every call's callbacks share (they were half of the
  // server's CPU samples with 1,000 readers), and a Read still holds at
  // most one queued task. Inline when the pool refuses.
  void SendThenProduce(int i, bool produce) {
    absl::Status status = options_.pool->Schedule(
        "Read",
        [this, i, produce] {
          // Not the last slot when `produce`: `this` outlives Send().
          Send(i);
          if (produce) {
            Produce();
          }
        },
        rpc::Lane::kStream);
    if (status.ok()) {
      return;
    }
    if (produce) {
      ScheduleProducer();  // Before Send(): a last chunk may end the call.
    }
    Send(i);
  }

  // Starts sending slots_[i] (writing_ == i), ending the call after it when
  // it is the last.
  void Send(int i) {
    Slot& slot = slots_[i];
    if (!slot.last) {
      StartWrite(&slot.message);
    } else if (!slot.status.ok() || !slot.message.Valid()) {
      Finish(ToGrpcStatus(slot.status));
    } else {
      StartWriteAndFinish(&slot.message, grpc::WriteOptions(),
                          ToGrpcStatus(absl::OkStatus()));
    }
  }

  // Runs on the pool: fills free slots until the last one is filled or both
  // are in use, sending each at once when no write is outstanding.
  void Produce() {
    for (;;) {
      int free;
      {
        absl::MutexLock lock(&mu_);
        free = writing_ == 0 ? 1 : 0;
      }
      // slots_[free] is neither being written nor ready: this task owns it.
      Fill(&slots_[free]);
      bool send = false;
      absl::Status cancelled;
      {
        absl::MutexLock lock(&mu_);
        if (cancelled_) {
          producing_ = false;
          cancelled = absl::CancelledError("Read: client went away");
        } else if (writing_ < 0) {
          writing_ = free;
          send = true;
        } else {
          ready_ = free;
        }
        if (cancelled.ok() && (slots_[free].last || !send)) {
          producing_ = false;  // Done, or both slots in use.
        }
      }
      if (!cancelled.ok()) {
        Finish(ToGrpcStatus(cancelled));
        return;
      }
      if (!send) {
        return;  // OnWriteDone() sends it and restarts the producer.
      }
      const bool last = slots_[free].last;
      Send(free);
      if (last) {
        return;  // The call is over; `this` may be gone.
      }
    }
  }

  // Opens reader_: for a compressed read from the start, the blob as the
  // store holds it, served as it is when that is zstd frames (no
  // recompression); otherwise the plain bytes from offset_.
  absl::Status Open() {
    if (compressor_ != nullptr && offset_ == 0) {
      absl::StatusOr<StoredBlobReader> stored =
          options_.store->OpenReadAsStored(digest_);
      if (!stored.ok()) {
        return stored.status();
      }
      reader_ = std::move(stored->reader);
      if (stored->zstd) {
        compressor_.reset();
        remaining_ = reader_->size();
      }
      return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<BlobReader>> reader =
        options_.store->OpenRead(digest_, offset_);
    if (!reader.ok()) {
      return reader.status();
    }
    reader_ = *std::move(reader);
    return absl::OkStatus();
  }

  // Reads (and compresses) the next chunk into `slot` and makes its
  // message. The end of the blob is verified before its last chunk.
  void Fill(Slot* slot) {
    FillBuffer(slot);
    if (slot->status.ok() && !slot->buffer.bytes()->empty()) {
      slot->message = ReadResponseOf(&slot->buffer);
    }
  }

  void FillBuffer(Slot* slot) {
    slot->message.Clear();
    if (reader_ == nullptr) {
      if (absl::Status status = Open(); !status.ok()) {
        slot->last = true;
        slot->status = status;
        return;
      }
    }
    if (slot->buffer.InUse()) {  // gRPC has not let go of the last chunk.
      slot->buffer = SharedReadBuffer();
    }
#if defined(__SANITIZE_THREAD__)
    // Over an in-process channel the client parses the very bytes sent, and
    // gRPC's last slice reference (whose drop ends InUse()) is kept with
    // atomics TSan cannot see; TSan then reports and suppresses a race on
    // the whole buffer per chunk, each costlier than the last (a 1 GiB read
    // ran past 600 s). Under TSan every chunk gets a fresh buffer, as the
    // Write path does (NextReadLocked).
    slot->buffer = SharedReadBuffer();
#endif
    std::string* out = slot->buffer.bytes();
    const size_t chunk = SizeBuffer(slot, out);
    for (;;) {
      const size_t want =
          static_cast<size_t>(std::min<int64_t>(remaining_, chunk));
      std::string* raw = compressor_ != nullptr ? &raw_ : out;
      absl::Status status = ReadRaw(want, raw);
      remaining_ -= static_cast<int64_t>(want);
      const bool last = remaining_ == 0;
      if (status.ok() && last && to_end_) {
        status = VerifyEnd();
      }
      if (status.ok() && compressor_ != nullptr) {
        status = compressor_->Compress(raw_, last, out);
      }
      if (!status.ok() || last) {
        slot->last = true;
        slot->status = status;
        return;
      }
      if (!out->empty()) {
        slot->last = false;
        return;
      }
    }
  }

  // Returns the chunk size for the next fill of `slot` and leaves `*out`
  // with exactly that capacity when the budget changed it (growing a string
  // in place may double it past its grant), empty then or when compressing.
  // An uncompressed read keeps the previous chunk's bytes in `*out`: they
  // are overwritten, so ReadRaw need not zero the buffer again.
  size_t SizeBuffer(Slot* slot, std::string* out) {
    if (compressor_ != nullptr) {
      out->clear();  // Compress() appends.
    }
    if (options_.read_buffers == nullptr) {
      return options_.read_chunk_bytes;
    }
    const size_t chunk = options_.read_buffers->Regrant(&slot->granted);
    if (out->capacity() != chunk) {
      std::string().swap(*out);
      out->reserve(chunk);
    }
    return chunk;
  }

  // Reads exactly `want` bytes of the blob into `*buf`, overwriting its old
  // bytes: resize zeroes only what it adds (clearing first made it zero
  // every chunk, 12% of the server's CPU in the 1,000-reader fan-out).
  absl::Status ReadRaw(size_t want, std::string* buf) {
    buf->resize(want);
    size_t got = 0;
    while (got < want) {
      absl::StatusOr<size_t> n = reader_->Read(buf->data() + got, want - got);
      if (!n.ok()) {
        return n.status();
      }
      if (*n == 0) {
        return absl::DataLossError(
            absl::StrCat("cas blob ", digest_.ToString(), " is truncated"));
      }
      got += *n;
    }
    return absl::OkStatus();
  }

  // Reads past the last byte so the reader checks the whole blob's digest.
  absl::Status VerifyEnd() {
    char extra;
    absl::StatusOr<size_t> n = reader_->Read(&extra, 1);
    if (!n.ok()) {
      return n.status();
    }
    if (*n != 0) {
      return absl::DataLossError(absl::StrCat("cas blob ", digest_.ToString(),
                                              " is longer than its digest"));
    }
    return absl::OkStatus();
  }

  const ByteStreamServiceOptions options_;
  ClientStreams::Slot slot_;  // Counts this call for its client.
  Digest digest_;
  int64_t offset_;
  int64_t remaining_ = 0;
  bool to_end_ = true;

  absl::Mutex mu_;
  Slot slots_[2];
  int writing_ ABSL_GUARDED_BY(mu_) = -1;        // Slot gRPC is sending, or -1.
  int ready_ ABSL_GUARDED_BY(mu_) = -1;          // Filled slot waiting, or -1.
  bool producing_ ABSL_GUARDED_BY(mu_) = false;  // A Produce() task is live.
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;  // A write failed.

  // Producer state: used by one Produce() at a time.
  std::unique_ptr<BlobReader> reader_;
  // Set for compressed-blobs, unless the store holds the blob compressed.
  std::unique_ptr<ZstdCompressor> compressor_;
  std::string raw_;  // Uncompressed chunk when compressing.
};

// Receives one Write call. Owned by gRPC; deletes itself in OnDone().
//
// Pipelined: while a pool task appends message N to the writer, the reactor
// already receives message N+1 into the other of two request buffers, so
// network and disk overlap; at most two messages are held per call. Only the
// pool task ("the drain") finishes the call once the first message has been
// received, so the reactor stays alive while it runs.
class WriteReactor final : public grpc::ServerReadReactor<bs::WriteRequest> {
 public:
  WriteReactor(const ByteStreamServiceOptions& options,
               UploadRegistry* registry, grpc::CallbackServerContext* context,
               bs::WriteResponse* response, std::string owner,
               ClientStreams::Slot slot)
      : options_(options),
        registry_(registry),
        owner_(std::move(owner)),
        slot_(std::move(slot)),
        response_(response),
        watch_(options.watchdog != nullptr ? options.watchdog->Add(context)
                                           : nullptr) {
    if (options_.read_only) {
      Finish(ToGrpcStatus(
          absl::PermissionDeniedError("Write: this cache is read-only")));
      return;
    }
    bs::WriteRequest* next;
    {
      absl::MutexLock lock(&mu_);
      next = NextReadLocked();
    }
    StartReadInto(next);
  }

  void OnReadDone(bool ok) override {
    if (watch_ != nullptr) {
      watch_->Received();
    }
    bool drain = false;
    absl::Status refused;
    {
      absl::MutexLock lock(&mu_);
      const int got = reading_;
      reading_ = -1;
      if (finished_) {
        return;  // The call is over; only OnDone() is left.
      }
      if (!ok) {
        eof_ = true;
      } else if (!started_) {
        absl::Status status = CheckFirst(bufs_[got]);
        if (!status.ok()) {
          finished_ = true;
          refused = status;  // Nothing to clean up yet.
        } else {
          started_ = true;
          Accept(got);
        }
      } else if (absl::Status status = CheckNext(bufs_[got]); !status.ok()) {
        error_ = status;  // Keeps the progress for a resume.
      } else {
        Accept(got);
      }
      if (refused.ok() && !draining_) {
        draining_ = true;  // No drain runs, so none can finish the call.
        drain = true;
      }
    }
    if (!refused.ok()) {
      Finish(ToGrpcStatus(refused));
      return;
    }
    if (drain) {
      absl::Status status = options_.pool->Schedule(
          "Write", [this] { Drain(); }, rpc::Lane::kStream);
      if (!status.ok()) {
        RefusedByPool(status);
      }
    }
  }

  void OnDone() override {
    if (watch_ != nullptr) {
      watch_->Done();
    }
    delete this;
  }

 private:
  // Starts reading the client's next message into `next` (when not null);
  // the watchdog times the wait.
  void StartReadInto(bs::WriteRequest* next) {
    if (next == nullptr) {
      return;
    }
    if (watch_ != nullptr) {
      watch_->Waiting();
    }
    StartRead(next);
  }

  // Returns the buffer to read the next message into, marking it as being
  // read, or null when the call must not read now. A read starts only while
  // no message waits in queued_, so that its message has a place to go.
  bs::WriteRequest* NextReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || reading_ >= 0 || queued_ >= 0 || eof_ || last_received_ ||
        !error_.ok()) {
      return nullptr;
    }
    for (int i = 0; i < 2; ++i) {
      if (i != queued_ && i != appending_) {
        reading_ = i;
        bufs_[i].Clear();  // Keeps the data buffer's capacity.
#if defined(__SANITIZE_THREAD__)
        // gRPC orders this reuse (our unlock, StartRead, its deserialising
        // thread) with code TSan cannot see; TSan then reports and suppresses
        // a race on the whole 1 MiB buffer per message, which costs about
        // 0.5 s each (a 1 GiB write took 412 s). Under TSan the buffer is
        // freed instead, so gRPC fills a fresh allocation.
        bufs_[i].mutable_data()->shrink_to_fit();
#endif
        return &bufs_[i];
      }
    }
    return nullptr;
  }

  // Queues the checked message in bufs_[i] for the drain.
  void Accept(int i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queued_ = i;
    next_offset_ =
        bufs_[i].write_offset() + static_cast<int64_t>(bufs_[i].data().size());
    last_received_ = bufs_[i].finish_write();
  }

  absl::Status CheckFirst(const bs::WriteRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<ResourceName> name =
        ParseWriteResourceName(request.resource_name());
    if (!name.ok()) {
      return name.status();
    }
    absl::Status status =
        CheckUploadSize(name->digest, options_.max_cas_blob_size_bytes);
    if (!status.ok()) {
      return status;
    }
    digest_ = name->digest;
    key_ = UploadKey(*name);
    if (name->compressor == Compressor::kZstd) {
      compressed_ = true;
      if (request.write_offset() != 0) {
        return absl::InvalidArgumentError(
            "Write: compressed uploads cannot resume; start at offset 0");
      }
    }
    if (request.write_offset() < 0 ||
        request.write_offset() > digest_.size_bytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Write: write_offset ", request.write_offset(),
                       " outside cas blob ", digest_.ToString()));
    }
    return absl::OkStatus();
  }

  // Checks a later message against the first and against the offset the
  // messages before it reach (uncompressed bytes, or compressed bytes for
  // compressed-blobs, as committed_size counts them).
  absl::Status CheckNext(const bs::WriteRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!request.resource_name().empty()) {
      absl::StatusOr<ResourceName> name =
          ParseWriteResourceName(request.resource_name());
      if (!name.ok() || name->digest != digest_) {
        return absl::InvalidArgumentError(
            "Write: resource_name changed within the stream");
      }
    }
    return CheckOffset(request.write_offset(), next_offset_);
  }

  absl::Status CheckOffset(int64_t write_offset, int64_t committed) const {
    if (write_offset != committed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Write: write_offset ", write_offset, " != committed size ",
          committed, " of cas blob ", digest_.ToString()));
    }
    return absl::OkStatus();
  }

  // Runs on the pool: handles queued messages in order, then a refused
  // message or the end of the stream, until the call is finished or it has
  // to wait for the client.
  void Drain() {
    for (;;) {
      int cur = -1;
      bool first = false;
      absl::Status error;
      bs::WriteRequest* next = nullptr;
      {
        absl::MutexLock lock(&mu_);
        if (queued_ < 0) {
          if (error_.ok() && !eof_) {
            draining_ = false;  // A read is outstanding; it drains again.
            return;
          }
          finished_ = true;  // No read is outstanding: nothing else runs.
          error = error_;
        } else {
          cur = queued_;
          queued_ = -1;
          appending_ = cur;
          first = !begun_;
          begun_ = true;
          next = NextReadLocked();  // Receive the next while this is written.
        }
      }
      if (cur < 0) {
        if (!error.ok()) {
          ParkOrRelease();
          Finish(ToGrpcStatus(error));
        } else {
          EndWithoutFinishWrite();
        }
        return;
      }
      StartReadInto(next);
      if (!(first ? Begin(bufs_[cur]) : Append(bufs_[cur]))) {
        return;  // Finished; `this` may be gone.
      }
      absl::MutexLock lock(&mu_);
      appending_ = -1;
    }
  }

  // Ends the call with `status` from the drain; the last use of `this`.
  void End(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
    }
    Finish(ToGrpcStatus(status));
  }

  // Ends the call with `status`, discarding the upload. Touches the disk:
  // call on the pool. Returns false (the call is finished).
  bool Fail(const absl::Status& status) {
    RefundQuota(0);
    if (claimed_) {
      registry_->Release(key_);
      claimed_ = false;
    }
    writer_.reset();
    End(status);
    return false;
  }

  // The pool refused the drain: end the call here, inline (no drain runs,
  // and gRPC cancels the read that may be outstanding).
  void RefusedByPool(const absl::Status& status) { Fail(status); }

  bool FinishOk() {
    response_->set_committed_size(committed_);
    End(absl::OkStatus());
    return false;
  }

  // Runs on the pool for the first message. Returns false when it finished
  // the call.
  bool Begin(const bs::WriteRequest& request) {
    if (options_.store->Contains(digest_)) {
      registry_->DropParked(key_);  // A stale partial upload, if any.
      // REAPI: -1 tells a compressed upload that the blob already exists.
      committed_ = compressed_ ? -1 : digest_.size_bytes();
      return FinishOk();
    }
    absl::StatusOr<std::unique_ptr<BlobWriter>> parked =
        registry_->Claim(key_, owner_, digest_.size_bytes());
    if (!parked.ok()) {
      End(parked.status());
      return false;
    }
    claimed_ = true;
    absl::Status status = AdoptOrOpen(request, *std::move(parked));
    if (!status.ok()) {
      return Fail(status);
    }
    if (options_.write_quota != nullptr) {
      status = options_.write_quota->Charge(
          owner_, digest_.size_bytes() - committed_, "Write");
      if (!status.ok()) {
        ParkOrRelease();  // A resumed upload stays parked for later.
        End(status);
        return false;
      }
      charged_ = digest_.size_bytes() - committed_;
    }
    return Append(request);
  }

  // Gives back what the quota charged beyond `keep` bytes.
  void RefundQuota(int64_t keep) {
    keep = std::max<int64_t>(keep, 0);
    if (options_.write_quota != nullptr && charged_ > keep) {
      options_.write_quota->Refund(owner_, charged_ - keep);
    }
    charged_ = 0;
  }

  // Resumes the parked writer when write_offset matches it, else opens a new
  // one (write_offset 0 restarts an upload from scratch).
  absl::Status AdoptOrOpen(const bs::WriteRequest& request,
                           std::unique_ptr<BlobWriter> parked) {
    if (parked != nullptr && request.write_offset() != 0) {
      committed_ = parked->committed_size();
      absl::Status status = CheckOffset(request.write_offset(), committed_);
      if (!status.ok()) {
        registry_->Park(key_, std::move(parked));  // Keep it for a retry.
        claimed_ = false;
        return status;
      }
      writer_ = std::move(parked);
      return absl::OkStatus();
    }
    parked.reset();
    if (request.write_offset() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Write: no partial upload to resume at write_offset ",
          request.write_offset(), " for cas blob ", digest_.ToString()));
    }
    // A compressed upload's writer takes the frames (the store decompresses
    // them to verify, and may keep them as they are).
    absl::StatusOr<std::unique_ptr<BlobWriter>> writer =
        compressed_ ? options_.store->OpenWriteZstd(digest_)
                    : options_.store->OpenWrite(digest_);
    if (!writer.ok()) {
      return writer.status();
    }
    writer_ = *std::move(writer);
    committed_ = 0;
    return absl::OkStatus();
  }

  // Runs on the pool: appends request.data(), and commits after the last
  // message. Returns false when it finished the call.
  bool Append(const bs::WriteRequest& request) {
    absl::Status status = request.data().empty()
                              ? absl::OkStatus()
                              : writer_->Append(request.data());
    if (!status.ok()) {
      return Fail(status);
    }
    // Compressed bytes for compressed-blobs.
    committed_ = writer_->committed_size();
    registry_->Progress(key_, committed_);
    if (!request.finish_write()) {
      return true;
    }
    {
      WriteOwnerScope owner(rpc::OwnerIdOf(options_.write_quota, owner_));
      status = writer_->Commit();
    }
    if (!status.ok()) {
      return Fail(status);
    }
    registry_->Release(key_);
    claimed_ = false;
    writer_.reset();
    charged_ = 0;
    if (options_.write_quota != nullptr) {
      options_.write_quota->Written(owner_, digest_.size_bytes());
    }
    return FinishOk();
  }

  // Runs on the pool when the client stops sending before finish_write.
  void EndWithoutFinishWrite() {
    if (!begun_) {
      End(absl::InvalidArgumentError("Write: stream ended with no request"));
      return;
    }
    ParkOrRelease();
    FinishOk();
  }

  // Parks an upload that made progress for a later resume; forgets others.
  // The bytes still to come are refunded (a resume charges them again).
  void ParkOrRelease() {
    if (writer_ != nullptr && committed_ > 0 && !compressed_) {
      RefundQuota(charged_ - (digest_.size_bytes() - committed_));
      registry_->Park(key_, std::move(writer_));
    } else if (claimed_) {
      RefundQuota(0);
      registry_->Release(key_);
    }
    claimed_ = false;
    writer_.reset();
  }

  const ByteStreamServiceOptions options_;
  UploadRegistry* const registry_;
  const std::string owner_;   // rpc::PrincipalOf the caller.
  ClientStreams::Slot slot_;  // Counts this call for its client.
  bs::WriteResponse* const response_;
  // Times waits for the client (null without a watchdog).
  std::shared_ptr<rpc::IdleWatchdog::Watch> watch_;

  absl::Mutex mu_;
  // The two message buffers: one being read, one queued or being appended.
  bs::WriteRequest bufs_[2];
  int reading_ ABSL_GUARDED_BY(mu_) = -1;       // Buffer a read fills, or -1.
  int queued_ ABSL_GUARDED_BY(mu_) = -1;        // Buffer waiting for the drain.
  int appending_ ABSL_GUARDED_BY(mu_) = -1;     // Buffer the drain works on.
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // A Drain() task is live.
  bool started_ ABSL_GUARDED_BY(mu_) = false;   // First message accepted.
  bool last_received_ ABSL_GUARDED_BY(mu_) = false;  // finish_write seen.
  bool eof_ ABSL_GUARDED_BY(mu_) = false;            // The client half-closed.
  bool finished_ ABSL_GUARDED_BY(mu_) = false;       // Finish() was called.
  absl::Status error_ ABSL_GUARDED_BY(mu_);          // A refused later message.
  int64_t next_offset_ ABSL_GUARDED_BY(mu_) = 0;     // Expected write_offset.

  // Set by CheckFirst() on the reactor thread before the first drain, then
  // read-only.
  Digest digest_;
  std::string key_;
  bool compressed_ = false;  // A compressed-blobs upload.

  // Drain state: used by one Drain() at a time.
  bool begun_ = false;    // Begin() ran.
  bool claimed_ = false;  // This call owns the registry entry for key_.
  int64_t committed_ = 0;
  int64_t charged_ = 0;  // Bytes charged to owner_'s write quota.
  std::unique_ptr<BlobWriter> writer_;
};

// Read is a raw method (ByteBuffers in and out) so that its responses can
// share the read buffers (ReadReactor); the other methods are typed.
class ByteStreamService final
    : public bs::ByteStream::WithRawCallbackMethod_Read<
          bs::ByteStream::CallbackService> {
 public:
  explicit ByteStreamService(const ByteStreamServiceOptions& options)
      : options_(options),
        registry_(options.max_partial_uploads,
                  options.partial_upload_idle_timeout, options.upload_limits,
                  options.upload_stats != nullptr ? options.upload_stats
                                                  : &own_stats_),
        streams_(options.max_streams_per_client, options.upload_stats != nullptr
                                                     ? options.upload_stats
                                                     : &own_stats_),
        sweeper_([this] { SweepLoop(); }) {}

  ~ByteStreamService() override {
    {
      absl::MutexLock lock(&sweeper_mu_);
      stopping_ = true;
    }
    sweeper_.join();
  }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Read(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* raw_request) override {
    absl::Status status =
        rpc::Authorize(options_.authorizer, *context, rpc::Access::kRead);
    bs::ReadRequest request;
    if (status.ok()) {
      grpc::ByteBuffer copy(*raw_request);  // Parsing consumes it.
      if (!grpc::SerializationTraits<bs::ReadRequest>::Deserialize(&copy,
                                                                   &request)
               .ok()) {
        status = absl::InvalidArgumentError("Read: malformed ReadRequest");
      }
    }
    if (!status.ok()) {
      return new rpc::RefusedWriteReactor<grpc::ByteBuffer>(
          ToGrpcStatus(status));
    }
    absl::StatusOr<ClientStreams::Slot> slot = streams_.Acquire(
        rpc::PrincipalOf(*context, options_.authorizer != nullptr));
    if (!slot.ok()) {
      return new rpc::RefusedWriteReactor<grpc::ByteBuffer>(
          ToGrpcStatus(slot.status()));
    }
    return new ReadReactor(options_, request, *std::move(slot));
  }

  grpc::ServerReadReactor<bs::WriteRequest>* Write(
      grpc::CallbackServerContext* context,
      bs::WriteResponse* response) override {
    absl::Status status =
        rpc::Authorize(options_.authorizer, *context, rpc::Access::kWrite);
    if (!status.ok()) {
      return new rpc::RefusedReadReactor<bs::WriteRequest>(
          ToGrpcStatus(status));
    }
    std::string owner =
        rpc::PrincipalOf(*context, options_.authorizer != nullptr);
    absl::StatusOr<ClientStreams::Slot> slot = streams_.Acquire(owner);
    if (!slot.ok()) {
      return new rpc::RefusedReadReactor<bs::WriteRequest>(
          ToGrpcStatus(slot.status()));
    }
    return new WriteReactor(options_, &registry_, context, response,
                            std::move(owner), *std::move(slot));
  }

  grpc::ServerUnaryReactor* QueryWriteStatus(
      grpc::CallbackServerContext* context,
      const bs::QueryWriteStatusRequest* request,
      bs::QueryWriteStatusResponse* response) override;

 private:
  // Releases expired partial uploads (and the space they reserve) even when
  // no other upload comes along to trigger a sweep.
  void SweepLoop() {
    const absl::Duration period =
        std::clamp(options_.partial_upload_idle_timeout / 4,
                   absl::Milliseconds(10), absl::Seconds(30));
    absl::MutexLock lock(&sweeper_mu_);
    while (!sweeper_mu_.AwaitWithTimeout(absl::Condition(&stopping_), period)) {
      sweeper_mu_.Unlock();
      registry_.SweepExpired();
      sweeper_mu_.Lock();
    }
  }

  const ByteStreamServiceOptions options_;
  UploadLimitStats own_stats_;  // When options_.upload_stats is null.
  UploadRegistry registry_;
  ClientStreams streams_;
  absl::Mutex sweeper_mu_;
  bool stopping_ ABSL_GUARDED_BY(sweeper_mu_) = false;
  std::thread sweeper_;  // Declared last: starts after the fields it uses.
};

grpc::ServerUnaryReactor* ByteStreamService::QueryWriteStatus(
    grpc::CallbackServerContext* context,
    const bs::QueryWriteStatusRequest* request,
    bs::QueryWriteStatusResponse* response) {
  absl::StatusOr<ResourceName> name;
  rpc::UnaryCall call(context, options_.authorizer, rpc::Access::kRead,
                      options_.pool, "QueryWriteStatus");
  call.Validate([&] {
    name = ParseWriteResourceName(request->resource_name());
    return name.status();
  });
  return call.RunOnPool([this, response, name = std::move(name)] {
    if (options_.store->Contains(name->digest)) {
      response->set_committed_size(name->digest.size_bytes());
      response->set_complete(true);
      return absl::OkStatus();
    }
    std::string key = UploadKey(*name);
    if (std::optional<int64_t> c = registry_.Committed(key)) {
      response->set_committed_size(*c);
      return absl::OkStatus();
    }
    return absl::NotFoundError(
        absl::StrCat("QueryWriteStatus: no upload ", key));
  });
}

}  // namespace

ReadBufferBudget::ReadBufferBudget(int64_t budget_bytes, size_t min_chunk,
                                   size_t max_chunk)
    : budget_(budget_bytes),
      min_chunk_(std::max<size_t>(1, std::min(min_chunk, max_chunk))),
      max_chunk_(std::max<size_t>(1, max_chunk)) {}

void ReadBufferBudget::AddStream() { streams_.fetch_add(1); }

void ReadBufferBudget::RemoveStream() { streams_.fetch_sub(1); }

size_t ReadBufferBudget::Regrant(size_t* granted) {
  const int64_t streams = std::max<int64_t>(1, streams_.load());
  const int64_t share = std::clamp<int64_t>(budget_ / (2 * streams),
                                            static_cast<int64_t>(min_chunk_),
                                            static_cast<int64_t>(max_chunk_));
  const int64_t old = static_cast<int64_t>(*granted);
  int64_t held = held_.load();
  int64_t want;
  for (;;) {
    want = share;
    if (want > old && held + (want - old) > budget_) {
      // No room to grow: keep what it has, but never less than min_chunk.
      want = std::max(old, static_cast<int64_t>(min_chunk_));
    }
    if (held_.compare_exchange_weak(held, held + (want - old))) {
      break;
    }
  }
  const int64_t now = held + (want - old);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  *granted = static_cast<size_t>(want);
  return *granted;
}

void ReadBufferBudget::Release(size_t granted) {
  held_.fetch_sub(static_cast<int64_t>(granted));
}

std::unique_ptr<bs::ByteStream::CallbackService> NewByteStreamService(
    const ByteStreamServiceOptions& options) {
  return std::make_unique<ByteStreamService>(options);
}

}  // namespace cairn::cas
