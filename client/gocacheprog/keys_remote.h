// Stores and finds go-keys records (keys.h) in a REAPI cache: the record is
// a CAS blob, found through the ActionCache entry RecordKey(scope, kind,
// package), whose one output file kKeysOutputPath names it. A newer record
// for the same key replaces the older one.
//
// Thread safety: free functions; safe to call concurrently as far as the
// client is.
#ifndef CAIRN_CLIENT_GOCACHEPROG_KEYS_REMOTE_H_
#define CAIRN_CLIENT_GOCACHEPROG_KEYS_REMOTE_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/gocacheprog/keys.h"
#include "client/reapi_client.h"

namespace cairn::client::gocacheprog {

// The path of the single output file in a record's ActionResult.
inline constexpr char kKeysOutputPath[] = "go-keys.json";

// Uploads `record` and points its ActionCache entry at it. Errors are the
// client's (PERMISSION_DENIED from read-only caches).
absl::Status StoreRecord(ReapiClient& client, absl::string_view scope,
                         const KeyRecord& record);

// Returns the record stored for kind+package in `scope`, nullopt when there
// is none or the entry is not a usable record; other errors are the
// client's.
absl::StatusOr<std::optional<KeyRecord>> LoadRecord(ReapiClient& client,
                                                    absl::string_view scope,
                                                    absl::string_view kind,
                                                    absl::string_view package);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_KEYS_REMOTE_H_
