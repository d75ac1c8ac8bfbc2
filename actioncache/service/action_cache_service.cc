#include "actioncache/service/action_cache_service.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cas/service/service_util.h"
#include "rpc/reactors.h"

namespace cairn::actioncache {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;

class ActionCacheService final : public v2::ActionCache::CallbackService {
 public:
  explicit ActionCacheService(const ActionCacheServiceOptions& options)
      : options_(options),
        get_metrics_(SelfRecorded(options.metrics, "GetActionResult")),
        update_metrics_(SelfRecorded(options.metrics, "UpdateActionResult")) {}

  grpc::ServerUnaryReactor* GetActionResult(
      grpc::CallbackServerContext* context,
      const v2::GetActionResultRequest* request,
      v2::ActionResult* response) override {
    absl::StatusOr<cas::Digest> action =
        cas::FromProto(request->action_digest(), "action_digest");
    rpc::UnaryCall call(context, options_.authorizer, rpc::Access::kRead,
                        options_.pool, "GetActionResult",
                        rpc::CallRecord(get_metrics_, request, response));
    call.Validate([&] {
          return cas::ValidateRequestScope(request->instance_name(),
                                           request->digest_function());
        })
        .Validate([&] { return action.status(); });
    InlineRequest inline_request;
    inline_request.stdout_raw = request->inline_stdout();
    inline_request.stderr_raw = request->inline_stderr();
    inline_request.output_files.assign(request->inline_output_files().begin(),
                                       request->inline_output_files().end());
    inline_request.max_inline_bytes = options_.max_inline_bytes;
    if (call.ok() && options_.store != nullptr) {
      std::optional<absl::StatusOr<ActionResult>> result =
          options_.cache->TryGet(request->instance_name(), *action,
                                 inline_request);
      if (result.has_value()) {  // Answered from memory.
        if (result->ok()) {
          *response = **std::move(result);
        }
        return call.FinishNow(result->status());
      }
    }
    return call.RunOnPool(
        [this, request, response, action = std::move(action),
         inline_request = std::move(inline_request)]() -> absl::Status {
          absl::StatusOr<ActionResult> result = options_.cache->Get(
              request->instance_name(), *action, inline_request);
          if (!result.ok()) {
            return result.status();
          }
          *response = *std::move(result);
          return absl::OkStatus();
        });
  }

  grpc::ServerUnaryReactor* UpdateActionResult(
      grpc::CallbackServerContext* context,
      const v2::UpdateActionResultRequest* request,
      v2::ActionResult* response) override {
    return rpc::UnaryCall(context, options_.authorizer, rpc::Access::kWrite,
                          options_.pool, "UpdateActionResult",
                          rpc::CallRecord(update_metrics_, request, response))
        .Validate([&] { return CheckUpdate(*request); })
        .RunOnPoolThen(
            [this, request, response,
             principal = options_.write_quota == nullptr
                             ? std::string()
                             : rpc::PrincipalOf(
                                   *context, options_.authorizer != nullptr)](
                rpc::UnaryDone done) mutable {
              Update(*request, std::move(principal), response,
                     std::move(done));
            });
  }

 private:
  // Returns the self-recorded metrics of this service's `method` (null
  // without `metrics`).
  static rpc::MethodMetrics* SelfRecorded(rpc::RpcMetrics* metrics,
                                          absl::string_view method) {
    return metrics == nullptr
               ? nullptr
               : metrics->SelfRecorded(absl::StrCat(
                     "/build.bazel.remote.execution.v2.ActionCache/", method));
  }

  // Stores the request's result for `principal`, charged to its write
  // quota (the result's serialized size); runs on the pool and calls
  // `done` there or, once the entry is durable, on the store's thread.
  void Update(const v2::UpdateActionResultRequest& request,
              std::string principal, v2::ActionResult* response,
              rpc::UnaryDone done) {
    rpc::WriteQuota* quota = options_.write_quota;
    const int64_t bytes =
        quota == nullptr
            ? 0
            : static_cast<int64_t>(request.action_result().ByteSizeLong());
    if (quota != nullptr) {
      absl::Status charged =
          quota->Charge(principal, bytes, "UpdateActionResult");
      if (!charged.ok()) {
        std::move(done)(charged);
        return;
      }
    }
    absl::StatusOr<cas::Digest> action =
        cas::FromProto(request.action_digest(), "action_digest");
    cas::WriteOwnerScope owner(rpc::OwnerIdOf(quota, principal));
    options_.cache->UpdateThen(
        request.instance_name(), *action, request.action_result(),
        [quota, bytes, response, principal = std::move(principal),
         done = std::move(done)](
            absl::StatusOr<ActionResult> stored) mutable {
          if (quota != nullptr && stored.ok()) {
            quota->Written(principal, bytes);
          } else if (quota != nullptr) {
            quota->Refund(principal, bytes);
          }
          if (stored.ok()) {
            *response = *std::move(stored);
          }
          std::move(done)(stored.status());
        });
  }

  absl::Status CheckUpdate(const v2::UpdateActionResultRequest& request) {
    if (options_.read_only) {
      return absl::PermissionDeniedError(
          "UpdateActionResult: this cache is read-only");
    }
    absl::Status status = cas::ValidateRequestScope(request.instance_name(),
                                                    request.digest_function());
    if (!status.ok()) {
      return status;
    }
    if (!request.has_action_result()) {
      return absl::InvalidArgumentError(
          "UpdateActionResult: action_result is missing");
    }
    return cas::FromProto(request.action_digest(), "action_digest").status();
  }

  const ActionCacheServiceOptions options_;
  rpc::MethodMetrics* const get_metrics_;     // Null: not self-recorded.
  rpc::MethodMetrics* const update_metrics_;  // Null: not self-recorded.
};

}  // namespace

std::unique_ptr<v2::ActionCache::CallbackService> NewActionCacheService(
    const ActionCacheServiceOptions& options) {
  return std::make_unique<ActionCacheService>(options);
}

}  // namespace cairn::actioncache
