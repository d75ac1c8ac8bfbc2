// TestCerts: a throwaway PKI made with the `openssl` command for TLS tests: a
// CA, a server certificate for localhost/127.0.0.1, client certificates
// "builder-1" (SAN DNS:builder-1.example) and "reader-1", and a client
// certificate named "builder-1" from a different, untrusted CA ("intruder").
// Files: <dir>/{ca,rogue,server,builder,reader,intruder}.{pem,key}.
//
// Thread safety: not thread-safe; make it once per test.
#ifndef CAIRN_TESTS_TESTUTIL_TEST_CERTS_H_
#define CAIRN_TESTS_TESTUTIL_TEST_CERTS_H_

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace cairn::testutil {

class TestCerts {
 public:
  explicit TestCerts(std::string dir) : dir_(std::move(dir)) {}

  // Returns true when the openssl command can be run.
  static bool Available() { return Run("openssl version"); }

  // Makes every file; false when a command failed.
  bool Make() {
    return MakeCa("ca", "cairn-test-ca") && MakeCa("rogue", "rogue-ca") &&
           MakeLeaf("server", "ca", "localhost",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1") &&
           MakeLeaf("builder", "ca", "builder-1",
                    "subjectAltName=DNS:builder-1.example") &&
           MakeLeaf("reader", "ca", "reader-1", "") &&
           MakeLeaf("intruder", "rogue", "builder-1", "");
  }

  // Returns <dir>/<name>, e.g. Path("ca.pem").
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Returns the contents of Path(name).
  std::string Read(const std::string& name) const {
    std::ifstream in(Path(name));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  static bool Run(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
  }

  bool MakeCa(const std::string& name, const std::string& cn) {
    return Run(
        "openssl req -x509 -newkey ec -pkeyopt "
        "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=" +
        cn + " -keyout " + Path(name + ".key") + " -out " +
        Path(name + ".pem"));
  }

  bool MakeLeaf(const std::string& name, const std::string& ca,
                const std::string& cn, const std::string& ext) {
    std::string ext_file = Path(name + ".ext");
    std::ofstream(ext_file) << ext << "\n";
    return Run("openssl req -new -newkey ec -pkeyopt "
               "ec_paramgen_curve:prime256v1 -nodes -subj /CN=" +
               cn + " -keyout " + Path(name + ".key") + " -out " +
               Path(name + ".csr")) &&
           Run("openssl x509 -req -days 2 -in " + Path(name + ".csr") +
               " -CA " + Path(ca + ".pem") + " -CAkey " + Path(ca + ".key") +
               " -CAcreateserial -out " + Path(name + ".pem") +
               (ext.empty() ? "" : " -extfile " + ext_file));
  }

  std::string dir_;
};

}  // namespace cairn::testutil

#endif  // CAIRN_TESTS_TESTUTIL_TEST_CERTS_H_
