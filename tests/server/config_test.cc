#include "server/config.h"

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "gtest/gtest.h"

ABSL_FLAG(std::string, cfg_test_listen, "127.0.0.1:1", "test flag");
ABSL_FLAG(int64_t, cfg_test_threads, 4, "test flag");
ABSL_FLAG(bool, cfg_test_read_only, false, "test flag");
ABSL_FLAG(std::vector<std::string>, cfg_test_list, {}, "test flag");
ABSL_FLAG(std::string, cfg_test_cli, "default", "test flag");

namespace cairn::server {
namespace {

class ConfigTest : public testing::Test {
 protected:
  absl::FlagSaver saver_;
};

TEST_F(ConfigTest, SetsFlagsFromYaml) {
  ASSERT_TRUE(ApplyConfigText("cfg_test_listen: 0.0.0.0:9092\n"
                              "cfg-test-threads: 16\n"
                              "cfg_test_read_only: true\n"
                              "cfg_test_list: [a, b]\n",
                              "test.yaml")
                  .ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_cfg_test_listen), "0.0.0.0:9092");
  EXPECT_EQ(absl::GetFlag(FLAGS_cfg_test_threads), 16);
  EXPECT_TRUE(absl::GetFlag(FLAGS_cfg_test_read_only));
  EXPECT_EQ(absl::GetFlag(FLAGS_cfg_test_list),
            (std::vector<std::string>{"a", "b"}));
}

TEST_F(ConfigTest, CommandLineParsedAfterTheFileWins) {
  const char* argv[] = {"prog", "--config", "x.yaml",
                        "--cfg_test_cli=from-cli"};
  auto path = FindConfigArg(4, const_cast<char**>(argv));
  ASSERT_TRUE(path.has_value());
  EXPECT_EQ(*path, "x.yaml");
  ASSERT_TRUE(ApplyConfigText("cfg_test_cli: from-file\n", "t").ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_cfg_test_cli), "from-file");
  const char* cli[] = {"prog", "--cfg_test_cli=from-cli"};
  absl::ParseCommandLine(2, const_cast<char**>(cli));
  EXPECT_EQ(absl::GetFlag(FLAGS_cfg_test_cli), "from-cli");
}

TEST(FindConfigArgTest, Forms) {
  const char* a[] = {"p", "--config=/etc/c.yaml"};
  EXPECT_EQ(FindConfigArg(2, const_cast<char**>(a)), "/etc/c.yaml");
  const char* b[] = {"p", "-config=c"};
  EXPECT_EQ(FindConfigArg(2, const_cast<char**>(b)), "c");
  const char* c[] = {"p", "--", "--config=x"};
  EXPECT_FALSE(FindConfigArg(3, const_cast<char**>(c)).has_value());
  const char* d[] = {"p", "--configure=x"};
  EXPECT_FALSE(FindConfigArg(2, const_cast<char**>(d)).has_value());
}

TEST_F(ConfigTest, RejectsUnknownKeysBadValuesAndBadYaml) {
  auto unknown = ApplyConfigText("no_such_setting: 1\n", "t.yaml");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.message().find("no_such_setting"), std::string::npos);
  EXPECT_EQ(ApplyConfigText("cfg_test_threads: many\n", "t").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyConfigText("cfg_test_threads: {a: 1}\n", "t").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyConfigText("[1, 2]\n", "t").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyConfigText("a: [\n", "t").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(absl::GetFlag(FLAGS_cfg_test_threads), 4);
}

TEST_F(ConfigTest, ReadsFilesAndReportsMissingOnes) {
  std::string path = testing::TempDir() + "/cairn_config_test.yaml";
  std::ofstream(path) << "# comment\ncfg_test_threads: 7\n";
  ASSERT_TRUE(ApplyConfigFile(path).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_cfg_test_threads), 7);
  EXPECT_EQ(ApplyConfigFile(path + ".missing").code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(ApplyConfigText("", "empty").ok());
}

}  // namespace
}  // namespace cairn::server
