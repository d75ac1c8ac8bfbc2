// Remote: the shim's view of a shared cache, one entry per Go ActionID.
// The shim talks to it only through this interface, so tests can inject a
// fake; NewReapiRemote() maps it onto a REAPI cache (see docs/go.md, "Mapping
// Go's cache onto REAPI", for the mapping and its reasoning).
//
// Thread safety: implementations must be safe to call concurrently.
#ifndef CAIRN_CLIENT_GOCACHEPROG_REMOTE_H_
#define CAIRN_CLIENT_GOCACHEPROG_REMOTE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/gocacheprog/local_store.h"
#include "client/gocacheprog/transfer_mode.h"
#include "client/reapi_client.h"

namespace cairn::client::gocacheprog {

using BodySink = absl::FunctionRef<absl::Status(absl::string_view chunk)>;
// Told the size of a found entry before its body is fetched; returns false
// to skip the fetch (the lookup then ends NOT_FOUND).
using SizeGate = absl::FunctionRef<bool(int64_t size)>;

class Remote {
 public:
  virtual ~Remote() = default;

  // Looks up `action_id` (32 raw bytes). On a hit, asks `admit` with the
  // body size, then streams the body into `sink` and returns the entry. The
  // body's length is checked, its SHA-256 is not: the caller must hash what
  // `sink` received against the entry's OutputID and discard it on a
  // mismatch (the shim's BodyWriter does, once). NOT_FOUND on a
  // miss (also when the entry is unusable, e.g. not written by this program,
  // or `admit` refused it); other codes mean the remote is failing.
  virtual absl::StatusOr<Entry> Get(absl::string_view action_id, SizeGate admit,
                                    BodySink sink) = 0;

  // Stores the body at `body_path` and then the entry for `action_id`.
  // Errors are the remote's (PERMISSION_DENIED from read-only caches).
  virtual absl::Status Put(absl::string_view action_id, const Entry& entry,
                           const std::string& body_path) = 0;

  // Returns the prefetch manifest blob stored for `scope` (manifest.h), at
  // most `max_bytes` long. NOT_FOUND when there is none (or it is unusable);
  // other codes mean the remote is failing.
  virtual absl::StatusOr<std::string> GetManifest(absl::string_view scope,
                                                  int64_t max_bytes) = 0;

  // Stores `manifest` (a blob from EncodeManifest) as the one for `scope`,
  // replacing any previous one.
  virtual absl::Status PutManifest(absl::string_view scope,
                                   absl::string_view manifest) = 0;

  // Bundles (bundle.h). Returns the bundle index blob stored for `scope`,
  // at most `max_bytes` long. NOT_FOUND when there is none (or it is
  // unusable); other codes mean the remote is failing.
  virtual absl::StatusOr<std::string> GetBundleIndex(absl::string_view scope,
                                                     int64_t max_bytes) = 0;

  // Returns true when blobs travel zstd-compressed both ways (the server
  // advertises zstd): bundle parts are then written plain, compressed on
  // the wire, and a server that recompresses at rest (cairn-server's
  // --zstd_rest_level) stores them smaller than the shim would; parts that
  // are zstd frames already are opaque to it.
  virtual bool CompressesBlobs() { return false; }

  // Streams the CAS blob `digest` (a bundle part) into `sink`, asking for
  // it zstd-compressed on the wire when `compress` and CompressesBlobs()
  // (the sink gets the blob's own bytes either way). The length is checked,
  // the SHA-256 is not: the caller checks every body it cuts from the bytes
  // against its OutputID. NOT_FOUND when absent; an error from `sink` ends
  // the read and is returned.
  virtual absl::Status ReadBlob(const cas::Digest& digest, bool compress,
                                BodySink sink) = 0;

  // Uploads the file at `path` as the CAS blob `digest` unless the remote
  // holds it already (it is asked first). INVALID_ARGUMENT when the file
  // does not match `digest`.
  virtual absl::Status UploadFile(const cas::Digest& digest,
                                  const std::string& path) = 0;

  // Stores `index` (a blob from EncodeBundleIndex, whose parts the remote
  // holds) as the bundle for `scope`, replacing any previous one.
  virtual absl::Status PutBundleIndex(absl::string_view scope,
                                      absl::string_view index) = 0;

  // Returns the body bytes moved so far, as sent on the wire (compressed)
  // and uncompressed. Zero when the remote does not count.
  virtual WireCounters Counters() const { return {}; }

  // Returns how many entries' bodies travelled zstd-compressed and plain,
  // the link rate the --zstd=auto probe estimated (bytes/s; 0: none) and
  // how often the mode changed after it, and the network round trip its
  // pings measured (transfer_mode.h). Zero when the remote does not count.
  struct Transfers {
    int64_t zstd = 0;
    int64_t plain = 0;
    double probe_rate = 0;
    int64_t mode_changes = 0;
    absl::Duration round_trip = absl::ZeroDuration();
  };
  virtual Transfers TransferCounts() const { return {}; }
};

// The path of the single output file in ActionResults written for Go.
inline constexpr char kGoOutputPath[] = "go-output";

// Returns the REAPI ActionCache key for a Go ActionID: SHA-256 over a fixed
// domain-separating prefix plus the ActionID bytes, sized as that preimage.
cas::Digest GoActionKey(absl::string_view action_id);

// Returns a Remote over `client` (owned). With a server that speaks zstd,
// `zstd` says whether bodies travel compressed (kAuto: measured per fetch,
// see transfer_mode.h); without, they travel plain.
std::unique_ptr<Remote> NewReapiRemote(std::unique_ptr<ReapiClient> client,
                                       ZstdPolicy zstd = ZstdPolicy::kAuto);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_REMOTE_H_
