// Prefetch manifests: the ActionIDs one build asked for, stored in the remote
// so the next run of the same build (on any machine) can fetch their entries
// concurrently before the go command asks for them one by one.
//
// Wire form (a CAS blob): kManifestMagic ("cairn-gocacheprog manifest v1\n")
// followed by raw 32-byte ActionIDs, in first-request order, no duplicates.
// It is found through the ActionCache key ManifestKey(scope): SHA-256 over
// "cairn-gocacheprog/v1 manifest\0" plus the scope, sized as that preimage
// (the same construction as GoActionKey, so bazel-remote accepts it).
//
// The scope names "the same build": by default DefaultPrefetchScope() below;
// CI can set it explicitly (--prefetch_scope). See docs/go.md, "Prefetch".
//
// Thread safety: free functions, safe from any thread.
#ifndef CAIRN_CLIENT_GOCACHEPROG_MANIFEST_H_
#define CAIRN_CLIENT_GOCACHEPROG_MANIFEST_H_

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "cas/digest.h"

namespace cairn::client::gocacheprog {

inline constexpr absl::string_view kManifestMagic =
    "cairn-gocacheprog manifest v1\n";
// The most ActionIDs a manifest holds (3.2 MB); later ones are dropped.
inline constexpr size_t kMaxManifestIds = 100000;
// The path of the single output file in a manifest's ActionResult.
inline constexpr char kManifestOutputPath[] = "go-manifest";

// Returns the manifest blob for `ids` (each 32 bytes; others are skipped),
// keeping the first kMaxManifestIds.
std::string EncodeManifest(absl::Span<const std::string> ids);

// Parses a manifest blob. INVALID_ARGUMENT for a wrong header, a length that
// is not header + 32*n, or more than kMaxManifestIds ids.
absl::StatusOr<std::vector<std::string>> DecodeManifest(absl::string_view blob);

// Returns the ActionCache key under which the manifest for `scope` lives.
cas::Digest ManifestKey(absl::string_view scope);

// Returns the default scope: the working directory, the go subcommand and
// its package arguments (from `go_args`, the go command's argv without
// argv[0]; flag values are skipped), and the environment variables that
// change what is built (GOOS, GOARCH, GOFLAGS, GOEXPERIMENT, CGO_ENABLED,
// GOAMD64, GOARM64, GOTOOLCHAIN) as `getenv` reports them (null = unset).
std::string DefaultPrefetchScope(
    absl::string_view cwd, absl::Span<const std::string> go_args,
    const std::function<const char*(const char*)>& getenv);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_MANIFEST_H_
