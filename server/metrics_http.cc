#include "server/metrics_http.h"

#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace cairn::server {
namespace {

class HttpServer final : public MetricsHttpServer {
 public:
  HttpServer(std::unique_ptr<httplib::Server> server, int port)
      : server_(std::move(server)), port_(port) {
    thread_ = std::thread([this] { server_->listen_after_bind(); });
  }
  ~HttpServer() override { Stop(); }

  int port() const override { return port_; }

  void Stop() override {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  const int port_;
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> StartMetricsHttpServer(
    absl::string_view listen, const rpc::Registry* registry) {
  size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", listen, "\": want HOST:PORT"));
  }
  std::string host(listen.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  auto server = std::make_unique<httplib::Server>();
  server->Get(
      "/metrics", [registry](const httplib::Request&, httplib::Response& res) {
        res.set_content(registry->Render(), "text/plain; version=0.0.4");
      });
  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  int bound = port == 0 ? server->bind_to_any_port(host)
                        : (server->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", listen));
  }
  return std::make_unique<HttpServer>(std::move(server), bound);
}

}  // namespace cairn::server
