// NewMemoryBlobStore(): a BlobStore held in memory, for tests and small
// deployments. Same contract as the disk store (see cas/blob_store.h): one
// size budget and one LRU over CAS blobs and keyed entries, quota reserved
// when a write opens (once per digest however many writers it has), readers
// unaffected by eviction. Nothing survives the
// process. Keyed entries are charged their value size.
//
// Thread safety: as BlobStore.
#ifndef CAIRN_CAS_MEMORY_BLOB_STORE_H_
#define CAIRN_CAS_MEMORY_BLOB_STORE_H_

#include <cstdint>
#include <memory>

#include "cas/blob_store.h"

namespace cairn::cas {

struct MemoryBlobStoreOptions {
  // Budget for stored bytes plus bytes reserved by writes in progress.
  int64_t max_size_bytes = int64_t{1} << 30;
};

// Returns an empty in-memory store.
std::unique_ptr<BlobStore> NewMemoryBlobStore(
    const MemoryBlobStoreOptions& options);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_MEMORY_BLOB_STORE_H_
